//! `json-filter`: keeps JSON messages whose `field` compares to a configured value.
//!
//! Config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `field` | dotted path into the document, e.g. `customer.tier` | required |
//! | `equals` | keep when the field equals this (strings without quotes; numbers, booleans as JSON) | — |
//! | `op` | `eq`, `ne`, `exists`, `missing`, `gt`, `lt`, `contains` | `eq` |
//! | `on-invalid` | a payload that is not JSON: `fail` (the failure policy decides) or `drop` | `fail` |
//!
//! `equals` is the value compared against by every op but `exists`/`missing`; `gt`/`lt`
//! compare numbers. A message whose field is absent fails every comparison but `ne` and
//! `missing`.

use weir_sdk::json::{Value, as_text, find};
use weir_sdk::prelude::*;

/// How the field is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Exists,
    Missing,
    Gt,
    Lt,
    Contains,
}

/// The configured filter.
pub struct JsonFilter {
    field: String,
    op: Op,
    operand: String,
    /// Parsed once: `gt`/`lt` compare against this number.
    number: Option<f64>,
    drop_invalid: bool,
}

impl Filter for JsonFilter {
    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["field", "equals", "op", "on-invalid"])?;
        let op = match config.get("op").unwrap_or("eq") {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "exists" => Op::Exists,
            "missing" => Op::Missing,
            "gt" => Op::Gt,
            "lt" => Op::Lt,
            "contains" => Op::Contains,
            other => {
                return Err(Error::fatal(format!(
                    "config key `op` has invalid value {other:?}: use eq, ne, exists, missing, gt, lt or contains"
                )));
            }
        };
        let operand = match op {
            Op::Exists | Op::Missing => String::new(),
            _ => config.require("equals")?.to_string(),
        };
        let number = match op {
            Op::Gt | Op::Lt => Some(operand.parse::<f64>().map_err(|_| {
                Error::fatal(format!("config key `equals` must be a number for op {op:?}, got {operand:?}"))
            })?),
            _ => None,
        };
        let drop_invalid = match config.get("on-invalid").unwrap_or("fail") {
            "fail" => false,
            "drop" => true,
            other => {
                return Err(Error::fatal(format!(
                    "config key `on-invalid` has invalid value {other:?}: use fail or drop"
                )));
            }
        };
        Ok(JsonFilter { field: config.require("field")?.to_string(), op, operand, number, drop_invalid })
    }

    fn filter(&mut self, msg: &Message) -> Result<bool, Error> {
        // Only the field is decoded; the rest of the payload is validated and skipped.
        match find(msg.value(), &self.field) {
            Ok(v) => Ok(self.matches(v.as_ref())),
            Err(_) if self.drop_invalid => Ok(false),
            Err(e) => Err(Error::from(e)),
        }
    }
}

impl JsonFilter {
    fn matches(&self, value: Option<&Value>) -> bool {
        match (self.op, value) {
            (Op::Exists, v) => v.is_some(),
            (Op::Missing, v) => v.is_none(),
            (Op::Ne, None) => true,
            (_, None) => false,
            (Op::Eq, Some(v)) => as_text(v) == self.operand,
            (Op::Ne, Some(v)) => as_text(v) != self.operand,
            (Op::Gt, Some(v)) => v.as_f64().zip(self.number).is_some_and(|(a, b)| a > b),
            (Op::Lt, Some(v)) => v.as_f64().zip(self.number).is_some_and(|(a, b)| a < b),
            (Op::Contains, Some(Value::Array(items))) => items.iter().any(|i| as_text(i) == self.operand),
            (Op::Contains, Some(v)) => as_text(v).contains(self.operand.as_str()),
        }
    }
}

weir_sdk::export_filter!(JsonFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(pairs: &[(&str, &str)]) -> JsonFilter {
        JsonFilter::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn keeps(f: &mut JsonFilter, doc: &str) -> bool {
        f.filter(&Message::new(doc)).unwrap()
    }

    #[test]
    fn equals_compares_strings_and_numbers() {
        let mut f = filter(&[("field", "order.status"), ("equals", "paid")]);
        assert!(keeps(&mut f, r#"{"order":{"status":"paid"}}"#));
        assert!(!keeps(&mut f, r#"{"order":{"status":"new"}}"#));
        assert!(!keeps(&mut f, r#"{"order":{}}"#));
        let mut n = filter(&[("field", "n"), ("equals", "3")]);
        assert!(keeps(&mut n, r#"{"n":3}"#));
        assert!(!keeps(&mut n, r#"{"n":4}"#));
    }

    #[test]
    fn other_ops() {
        let mut gt = filter(&[("field", "total"), ("op", "gt"), ("equals", "100")]);
        assert!(keeps(&mut gt, r#"{"total":150.5}"#));
        assert!(!keeps(&mut gt, r#"{"total":100}"#));
        let mut ex = filter(&[("field", "email"), ("op", "exists")]);
        assert!(keeps(&mut ex, r#"{"email":null}"#));
        assert!(!keeps(&mut ex, r#"{}"#));
        let mut c = filter(&[("field", "tags"), ("op", "contains"), ("equals", "vip")]);
        assert!(keeps(&mut c, r#"{"tags":["new","vip"]}"#));
        assert!(!keeps(&mut c, r#"{"tags":["new"]}"#));
    }

    #[test]
    fn invalid_payloads_fail_or_drop_as_configured() {
        let mut f = filter(&[("field", "a"), ("equals", "1")]);
        let e = f.filter(&Message::new("not json")).unwrap_err();
        assert!(!e.is_retryable());
        let mut d = filter(&[("field", "a"), ("equals", "1"), ("on-invalid", "drop")]);
        assert!(!keeps(&mut d, "not json"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |pairs: &[(&str, &str)]| JsonFilter::init(&Config::from_pairs(pairs.iter().copied())).err().unwrap();
        assert!(err(&[("equals", "1")]).message().contains("`field`"));
        assert!(err(&[("field", "a")]).message().contains("`equals`"));
        assert!(err(&[("field", "a"), ("equals", "1"), ("typo", "x")]).message().contains("`typo`"));
        assert!(err(&[("field", "a"), ("op", "gt"), ("equals", "x")]).message().contains("`equals`"));
    }
}

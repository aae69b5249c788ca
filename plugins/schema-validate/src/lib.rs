//! `schema-validate`: passes JSON messages that satisfy a JSON Schema and fails the others
//! with the validation errors as the reason — with the pipeline's `dead-letter` policy they
//! land in the dead-letter topic, the reason in `weir-dlq-error`.
//!
//! Config:
//!
//! | key | meaning |
//! |---|---|
//! | `schema` | the JSON Schema, inline (drafts 4, 6, 7, 2019-09, 2020-12) |
//! | `max-errors` | errors listed in a reason (default 5) |
//!
//! Remote `$ref`s are not fetched: plugins have no network. Invalid messages are not
//! retryable (the message is bad); malformed JSON is reported the same way.

use weir_sdk::json::Value;
use weir_sdk::prelude::*;

/// The configured validator.
pub struct SchemaValidate {
    validator: jsonschema::Validator,
    max_errors: usize,
}

impl Filter for SchemaValidate {
    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["schema", "max-errors"])?;
        let raw = config.require("schema")?;
        let schema: Value = weir_sdk::serde_json::from_str(raw)
            .map_err(|e| Error::fatal(format!("config key `schema` is not JSON: {e}")))?;
        let validator = jsonschema::validator_for(&schema)
            .map_err(|e| Error::fatal(format!("config key `schema` is not a valid JSON Schema: {e}")))?;
        Ok(SchemaValidate { validator, max_errors: config.parse_or("max-errors", 5)? })
    }

    fn filter(&mut self, msg: &Message) -> Result<bool, Error> {
        let doc: Value = msg.json()?;
        let errors: Vec<String> = self
            .validator
            .iter_errors(&doc)
            .take(self.max_errors)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{}: {e}", if at.is_empty() { "/" } else { at.as_str() })
            })
            .collect();
        if errors.is_empty() {
            return Ok(true);
        }
        Err(Error::fatal(format!("schema validation failed: {}", errors.join("; "))))
    }
}

weir_sdk::export!(SchemaValidate as filter);

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"object","required":["id","email"],"properties":{"id":{"type":"integer","minimum":1},"email":{"type":"string","pattern":"@"}}}"#;

    #[test]
    fn valid_pass_and_invalid_fail_with_reasons() {
        let mut v = SchemaValidate::init(&Config::from_pairs([("schema", SCHEMA)])).unwrap();
        assert!(v.filter(&Message::new(r#"{"id":1,"email":"a@b"}"#)).unwrap());
        let e = v.filter(&Message::new(r#"{"id":0}"#)).unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.message().contains("email"), "{e}");
        assert!(e.message().contains("/id"), "{e}");
        assert!(v.filter(&Message::new("nope")).is_err());
    }

    #[test]
    fn a_bad_schema_names_the_key() {
        let e = SchemaValidate::init(&Config::from_pairs([("schema", r#"{"type":"nonsense"}"#)])).err().unwrap();
        assert!(e.message().contains("`schema`"), "{e}");
        let e = SchemaValidate::init(&Config::from_pairs([("schema", "{")])).err().unwrap();
        assert!(e.message().contains("not JSON"), "{e}");
    }
}

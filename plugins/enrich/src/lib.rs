//! `enrich`: joins a lookup table onto JSON messages. The table lives in the step's state, so
//! it survives restarts and can be updated by messages flowing through the same pipeline.
//!
//! Config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `by` | the lookup key: `key`, `header:NAME`, `field:PATH` | required |
//! | `into` | where the found entry goes (dotted path) | required |
//! | `table.<k>` | a seed entry (JSON or text), written to state on first use | — |
//! | `update-type` | messages with this `weir-type` header upsert the table instead: payload `{"key":K,"value":V}` (`value` null deletes) | `enrich-update` |
//! | `missing` | no entry found: `pass` (unchanged), `drop` or `fail` | `pass` |
//!
//! State is per source partition: send table updates with the same message key as the
//! messages they enrich, or use a one-partition source.

use weir_sdk::json::{Value, parse_value, set_path};
use weir_sdk::prelude::*;

/// What to do when the table has no entry.
#[derive(Clone, Copy)]
enum Missing {
    Pass,
    Drop,
    Fail,
}

/// The configured enricher.
pub struct Enrich {
    by: Selector,
    into: String,
    seeds: Vec<(String, Value)>,
    seeded: bool,
    update_type: String,
    missing: Missing,
}

const SEEDED: &[u8] = b"seeded";

fn entry_key(k: &str) -> Vec<u8> {
    format!("table:{k}").into_bytes()
}

impl Plugin for Enrich {
    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["by", "into", "table.", "update-type", "missing"])?;
        let missing = match config.get("missing").unwrap_or("pass") {
            "pass" => Missing::Pass,
            "drop" => Missing::Drop,
            "fail" => Missing::Fail,
            other => {
                return Err(Error::fatal(format!(
                    "config key `missing` has invalid value {other:?}: use pass, drop or fail"
                )));
            }
        };
        Ok(Enrich {
            by: Selector::parse("by", config.require("by")?)?,
            into: config.require("into")?.to_string(),
            seeds: config.with_prefix("table.").map(|(k, v)| (k.to_string(), parse_value(v))).collect(),
            seeded: false,
            update_type: config.get("update-type").unwrap_or("enrich-update").to_string(),
            missing,
        })
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        self.seed()?;
        if msg.message_type() == Some(self.update_type.as_str()) {
            return self.update(&msg);
        }
        let found = match self.by.select(&msg)? {
            Some(k) => state::get_json::<Value>(&entry_key(&k))?,
            None => None,
        };
        let Some(entry) = found else {
            return match self.missing {
                Missing::Pass => Ok(Outcome::forward(msg)),
                Missing::Drop => Ok(Outcome::Drop),
                Missing::Fail => Err(Error::fatal("no table entry for the message's lookup key")),
            };
        };
        let mut doc: Value = msg.json()?;
        if !set_path(&mut doc, &self.into, entry) {
            return Err(Error::fatal(format!("cannot set `{}`: a parent is not an object", self.into)));
        }
        let value = weir_sdk::serde_json::to_vec(&doc)?;
        Ok(Outcome::one(Output::replacing(&msg, value)))
    }
}

impl Enrich {
    /// Write the configured seed entries once per partition's state.
    fn seed(&mut self) -> Result<(), Error> {
        if self.seeded {
            return Ok(());
        }
        if state::get(SEEDED).is_none() {
            for (k, v) in &self.seeds {
                state::set_json(&entry_key(k), v)?;
            }
            state::set(SEEDED, b"1")?;
        }
        self.seeded = true;
        Ok(())
    }

    fn update(&mut self, msg: &Message) -> Result<Outcome, Error> {
        let doc: Value = msg.json()?;
        let key = doc["key"].as_str().map(str::to_string).or_else(|| doc["key"].as_u64().map(|n| n.to_string()));
        let Some(key) = key else { return Err(Error::fatal("a table update needs a \"key\" (string or number)")) };
        match &doc["value"] {
            Value::Null => state::delete(&entry_key(&key)),
            v => state::set_json(&entry_key(&key), v)?,
        }
        Ok(Outcome::Drop)
    }
}

weir_sdk::export!(Enrich);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        let err = |pairs: &[(&str, &str)]| Enrich::init(&Config::from_pairs(pairs.iter().copied())).err().unwrap();
        assert!(err(&[("into", "x")]).message().contains("`by`"));
        assert!(err(&[("by", "key")]).message().contains("`into`"));
        assert!(err(&[("by", "key"), ("into", "x"), ("missing", "?")]).message().contains("`missing`"));
        let ok = Enrich::init(&Config::from_pairs([
            ("by", "field:c"),
            ("into", "customer"),
            ("table.c1", r#"{"tier":"gold"}"#),
        ]))
        .unwrap();
        assert_eq!(ok.seeds, vec![("c1".to_string(), weir_sdk::json::json!({"tier":"gold"}))]);
    }
}

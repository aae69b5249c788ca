//! `dedup`: passes each idempotency key once within a time window and drops repeats — across
//! batches and restarts, because the keys seen live in the step's state, committed with the
//! outputs.
//!
//! Config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `by` | the idempotency key: `key`, `header:NAME`, `field:PATH` | `header:weir-idempotency-key` |
//! | `window` | how long a key is remembered (`10m`, `24h`, `7d`) | `24h` |
//! | `missing` | a message without the key: `pass`, `drop` or `fail` | `pass` |
//!
//! State is per source partition: produce messages that share an idempotency key with the
//! same message key (or to a one-partition topic) so repeats meet the same state.

use weir_sdk::prelude::*;

/// What to do with a message lacking the idempotency key.
#[derive(Clone, Copy)]
enum Missing {
    Pass,
    Drop,
    Fail,
}

/// The configured deduplicator.
pub struct Dedup {
    by: Selector,
    window_ms: u64,
    missing: Missing,
}

impl Filter for Dedup {
    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["by", "window", "missing"])?;
        let by = Selector::parse("by", config.get("by").unwrap_or("header:weir-idempotency-key"))?;
        let window_ms = config.duration_ms_or("window", 24 * 3_600_000)?;
        if window_ms == 0 {
            return Err(Error::fatal("config key `window` must be longer than 0"));
        }
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
        Ok(Dedup { by, window_ms, missing })
    }

    fn filter(&mut self, msg: &Message) -> Result<bool, Error> {
        let Some(id) = self.by.select(msg)? else {
            return match self.missing {
                Missing::Pass => Ok(true),
                Missing::Drop => Ok(false),
                Missing::Fail => Err(Error::fatal("message has no idempotency key")),
            };
        };
        let key = format!("seen:{id}");
        if state::get(key.as_bytes()).is_some() {
            return Ok(false);
        }
        state::set_with_ttl(key.as_bytes(), b"1", self.window_ms)?;
        Ok(true)
    }
}

weir_sdk::export_filter!(Dedup);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        let err = |pairs: &[(&str, &str)]| Dedup::init(&Config::from_pairs(pairs.iter().copied())).err().unwrap();
        assert!(err(&[("window", "soon")]).message().contains("`window`"));
        assert!(err(&[("missing", "maybe")]).message().contains("`missing`"));
        assert!(err(&[("by", "body")]).message().contains("`by`"));
        let ok = Dedup::init(&Config::from_pairs([("window", "10m")])).unwrap();
        assert_eq!(ok.window_ms, 600_000);
    }

    #[test]
    fn messages_without_the_key_follow_the_setting() {
        let mut pass = Dedup::init(&Config::default()).unwrap();
        assert!(pass.filter(&Message::new("x")).unwrap());
        let mut drop = Dedup::init(&Config::from_pairs([("missing", "drop")])).unwrap();
        assert!(!drop.filter(&Message::new("x")).unwrap());
        let mut fail = Dedup::init(&Config::from_pairs([("missing", "fail")])).unwrap();
        assert!(fail.filter(&Message::new("x")).is_err());
    }
}

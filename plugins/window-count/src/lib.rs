//! `window-count`: counts messages per key in tumbling windows, keeping the counts in state,
//! and emits one result per key when its window closes.
//!
//! Config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `window` | window length (`10s`, `1m`, `1h`) | `1m` |
//! | `by` | what to count by: `key`, `header:NAME`, `field:PATH` | `key` |
//! | `time` | `append` (the log's append time) or `field:PATH` (event time, ms since the epoch) | `append` |
//! | `max-keys` | most keys in one window; more fail the message | `10000` |
//!
//! A window closes when the first message of a later window arrives in the same partition;
//! then every key counted in it is emitted as
//! `{"key":K,"window_start":MS,"window_end":MS,"count":N}` with message key `K`. With event
//! time, a message older than the open window is late and dropped (counted in `late`).

use weir_sdk::json::{Value, get_path};
use weir_sdk::prelude::*;

const CURRENT: &[u8] = b"window";
const KEYS: &[u8] = b"keys";
const LATE: &[u8] = b"late";

/// Where a message's time comes from.
enum Clock {
    Append,
    Field(String),
}

/// The configured counter.
pub struct WindowCount {
    window_ms: u64,
    by: Selector,
    clock: Clock,
    max_keys: usize,
}

impl Plugin for WindowCount {
    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["window", "by", "time", "max-keys"])?;
        let window_ms = config.duration_ms_or("window", 60_000)?;
        if window_ms == 0 {
            return Err(Error::fatal("config key `window` must be longer than 0"));
        }
        let clock = match config.get("time").unwrap_or("append") {
            "append" => Clock::Append,
            t => match t.strip_prefix("field:") {
                Some(path) if !path.is_empty() => Clock::Field(path.to_string()),
                _ => {
                    return Err(Error::fatal(format!(
                        "config key `time` has invalid value {t:?}: use append or field:PATH"
                    )));
                }
            },
        };
        let by = Selector::parse("by", config.get("by").unwrap_or("key"))?;
        Ok(WindowCount { window_ms, by, clock, max_keys: config.parse_or("max-keys", 10_000)? })
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let time = self.time_of(&msg)?;
        let window = time - time % self.window_ms;
        let Some(key) = self.by.select(&msg)? else { return Ok(Outcome::Drop) };
        let mut outputs = Vec::new();
        match state::get_json::<u64>(CURRENT)? {
            Some(open) if window < open => {
                let late: u64 = state::get_json(LATE)?.unwrap_or(0);
                state::set_json(LATE, &(late + 1))?;
                return Ok(Outcome::Drop);
            }
            Some(open) if window > open => outputs = self.close(open)?,
            Some(_) => {}
            None => {}
        }
        state::set_json(CURRENT, &window)?;
        let mut keys: Vec<String> = state::get_json(KEYS)?.unwrap_or_default();
        let count_key = format!("count:{key}");
        let count: u64 = state::get_json(count_key.as_bytes())?.unwrap_or(0);
        if count == 0 {
            if keys.len() >= self.max_keys {
                return Err(Error::fatal(format!(
                    "more than {} keys in one window (config key `max-keys`)",
                    self.max_keys
                )));
            }
            keys.push(key.clone());
            state::set_json(KEYS, &keys)?;
        }
        state::set_json(count_key.as_bytes(), &(count + 1))?;
        Ok(if outputs.is_empty() { Outcome::Drop } else { Outcome::Emit(outputs) })
    }
}

impl WindowCount {
    fn time_of(&self, msg: &Message) -> Result<u64, Error> {
        match &self.clock {
            Clock::Append => Ok(msg.timestamp_ms()),
            Clock::Field(path) => {
                let doc: Value = msg.json()?;
                get_path(&doc, path)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| Error::fatal(format!("message has no numeric time field `{path}`")))
            }
        }
    }

    /// Emit and forget every count of the window starting at `start`.
    fn close(&self, start: u64) -> Result<Vec<Output>, Error> {
        let keys: Vec<String> = state::get_json(KEYS)?.unwrap_or_default();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let count_key = format!("count:{key}");
            let count: u64 = state::get_json(count_key.as_bytes())?.unwrap_or(0);
            state::delete(count_key.as_bytes());
            let result = weir_sdk::json::json!({
                "key": key, "window_start": start, "window_end": start + self.window_ms, "count": count
            });
            out.push(Output::json(&result)?.key(key.into_bytes()));
        }
        state::delete(KEYS);
        Ok(out)
    }
}

weir_sdk::export!(WindowCount);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        let err = |pairs: &[(&str, &str)]| WindowCount::init(&Config::from_pairs(pairs.iter().copied())).err().unwrap();
        assert!(err(&[("window", "0s")]).message().contains("`window`"));
        assert!(err(&[("time", "now")]).message().contains("`time`"));
        assert!(err(&[("max-keys", "lots")]).message().contains("`max-keys`"));
    }

    #[test]
    fn event_time_comes_from_the_field() {
        let w = WindowCount::init(&Config::from_pairs([("time", "field:ts"), ("window", "10s")])).unwrap();
        assert_eq!(w.time_of(&Message::new(r#"{"ts":12345}"#)).unwrap(), 12345);
        assert!(w.time_of(&Message::new(r#"{"ts":"x"}"#)).is_err());
    }
}

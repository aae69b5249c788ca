//! `window-count`: counts messages per key in tumbling windows, keeping the counts in state,
//! and emits one result per key when its window closes. Built on the SDK's `Aggregate` kind.
//!
//! Config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `window` | window length (`10s`, `1m`, `1h`) | `1m` |
//! | `by` | what to count by: `key`, `header:NAME`, `field:PATH` | `key` |
//! | `time` | `append` (the log's append time) or `field:PATH` (event time, ms since the epoch) | `append` |
//!
//! A window closes when the first message of a later window arrives in the same partition;
//! then every key counted in it is emitted as
//! `{"key":K,"window_start":MS,"window_end":MS,"count":N}` with message key `K`. With event
//! time, a message older than the open window is late: dropped, and counted in state under
//! `agg.late`. Messages without the `by` value are not counted.

use weir_sdk::Window;
use weir_sdk::json::{Value, get_path, json};
use weir_sdk::prelude::*;

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
}

impl Aggregate for WindowCount {
    type In = Message;
    type Acc = u64;
    type Out = Json<Value>;

    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["window", "by", "time"])?;
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
        Ok(WindowCount { window_ms, by, clock })
    }

    fn window_ms(&self) -> u64 {
        self.window_ms
    }

    fn key(&self, msg: &Message, _meta: &Meta) -> Result<String, Error> {
        self.by.select(msg)?.ok_or_else(|| Error::fatal("message has no value to count by (config key `by`)"))
    }

    fn time(&self, msg: &Message, meta: &Meta) -> Result<u64, Error> {
        match &self.clock {
            Clock::Append => Ok(meta.timestamp_ms),
            Clock::Field(path) => {
                let doc: Value = msg.json()?;
                get_path(&doc, path)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| Error::fatal(format!("message has no numeric time field `{path}`")))
            }
        }
    }

    fn add(&mut self, count: &mut u64, _msg: Message) -> Result<(), Error> {
        *count += 1;
        Ok(())
    }

    fn emit(&mut self, key: String, w: Window, count: u64) -> Result<Json<Value>, Error> {
        Ok(Json(json!({ "key": key, "window_start": w.start_ms, "window_end": w.end_ms, "count": count })))
    }
}

weir_sdk::export!(WindowCount as aggregate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        let err = |pairs: &[(&str, &str)]| WindowCount::init(&Config::from_pairs(pairs.iter().copied())).err().unwrap();
        assert!(err(&[("window", "0s")]).message().contains("`window`"));
        assert!(err(&[("time", "now")]).message().contains("`time`"));
        assert!(err(&[("by", "x")]).message().contains("`by`"));
    }

    #[test]
    fn event_time_comes_from_the_field() {
        let w = WindowCount::init(&Config::from_pairs([("time", "field:ts"), ("window", "10s")])).unwrap();
        let m = Message::new(r#"{"ts":12345}"#);
        assert_eq!(w.time(&m, &m.meta()).unwrap(), 12345);
        let bad = Message::new(r#"{"ts":"x"}"#);
        assert!(w.time(&bad, &bad.meta()).is_err());
    }
}

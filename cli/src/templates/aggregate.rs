//! A weir aggregate: counts messages per key in tumbling windows (`window`, default one
//! minute), reported as `TAG/KEY: N in [start, end)` (`tag` from the config, default `count`).

use weir_sdk::prelude::*;
use weir_sdk::Window;

#[derive(serde::Deserialize)]
pub struct Counts {
    #[serde(default = "one_minute")]
    window: std::time::Duration,
    #[serde(default = "count")]
    tag: String,
}

fn one_minute() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}

fn count() -> String {
    "count".into()
}

impl Aggregate for Counts {
    type In = Message;
    type Acc = u64;
    type Out = String;

    fn init(config: &Config) -> Result<Self, Error> {
        config.deserialize()
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis() as u64
    }

    fn key(&self, msg: &Message, _meta: &Meta) -> Result<String, Error> {
        Ok(msg.key_str().unwrap_or("(none)").to_string())
    }

    fn add(&mut self, count: &mut u64, _msg: Message) -> Result<(), Error> {
        *count += 1;
        Ok(())
    }

    fn emit(&mut self, key: String, w: Window, count: u64) -> Result<String, Error> {
        Ok(format!("{}/{key}: {count} in [{}, {})", self.tag, w.start_ms, w.end_ms))
    }
}

weir_sdk::export!(Counts as aggregate);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reports() {
        let mut c = Counts::init(&Config::default()).unwrap();
        let mut n = 0;
        c.add(&mut n, Message::new("x")).unwrap();
        assert_eq!(c.window_ms(), 60_000);
        let w = Window { start_ms: 0, end_ms: 60_000 };
        assert_eq!(c.emit("k".into(), w, n).unwrap(), "count/k: 1 in [0, 60000)");
    }

    #[test]
    fn a_tag_of_digits_is_text() {
        let mut c = Counts::init(&Config::from_pairs([("tag", "01"), ("window", "5s")])).unwrap();
        assert_eq!(c.window_ms(), 5_000);
        let w = Window { start_ms: 0, end_ms: 5_000 };
        assert_eq!(c.emit("k".into(), w, 2).unwrap(), "01/k: 2 in [0, 5000)");
    }
}

//! A weir router: messages with a `priority` header of `high` go to the `urgent` topic (or the
//! topic configured as `to`); the rest pass on.

use weir_sdk::prelude::*;

#[derive(serde::Deserialize)]
pub struct Urgent {
    #[serde(default = "urgent")]
    to: String,
}

fn urgent() -> String {
    "urgent".into()
}

impl Route for Urgent {
    fn init(config: &Config) -> Result<Self, Error> {
        config.deserialize()
    }

    fn route(&mut self, msg: &Message) -> Result<Option<String>, Error> {
        Ok((msg.header("priority") == Some("high")).then(|| self.to.clone()))
    }
}

weir_sdk::export!(Urgent as route);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_high_priority() {
        let mut r = Urgent::init(&Config::default()).unwrap();
        assert_eq!(r.route(&Message::new("x").with_header("priority", "high")).unwrap().as_deref(), Some("urgent"));
        assert_eq!(r.route(&Message::new("x")).unwrap(), None);
    }

    #[test]
    fn routes_to_a_topic_named_by_digits() {
        let mut r = Urgent::init(&Config::from_pairs([("to", "2024")])).unwrap();
        assert_eq!(r.route(&Message::new("x").with_header("priority", "high")).unwrap().as_deref(), Some("2024"));
    }
}

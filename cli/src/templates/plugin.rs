//! A weir plugin in the general form: upper-cases text payloads, sends empty ones to the
//! `rejects` topic (or the topic configured as `rejects`).

use weir_sdk::prelude::*;

#[derive(serde::Deserialize)]
pub struct Shout {
    #[serde(default = "rejects")]
    rejects: String,
}

fn rejects() -> String {
    "rejects".into()
}

impl Plugin for Shout {
    fn init(config: &Config) -> Result<Self, Error> {
        config.deserialize()
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let text = msg.text()?.to_uppercase();
        if text.is_empty() {
            return Ok(Outcome::one(Output::from(msg).to(&self.rejects)));
        }
        let mut out = Output::from(msg);
        out.value = text.into_bytes();
        Ok(Outcome::one(out))
    }
}

weir_sdk::export!(Shout);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shouts() {
        let mut s = Shout::init(&Config::default()).unwrap();
        let Outcome::Emit(out) = s.process(Message::new("hi")).unwrap() else { panic!("expected output") };
        assert_eq!(out[0].value, b"HI");
    }

    #[test]
    fn rejects_go_to_a_topic_named_by_digits() {
        let mut s = Shout::init(&Config::from_pairs([("rejects", "404")])).unwrap();
        let Outcome::Emit(out) = s.process(Message::new("")).unwrap() else { panic!("expected output") };
        assert_eq!(out[0].topic.as_deref(), Some("404"));
    }
}

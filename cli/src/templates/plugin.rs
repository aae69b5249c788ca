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
            // The input, unchanged, to another topic: crosses back as a code, not as bytes.
            return Ok(Outcome::Forward(self.rejects.clone()));
        }
        // A new payload keeping the input's key and headers.
        Ok(Outcome::one(Output::replacing(&msg, text)))
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
        let Outcome::Forward(topic) = s.process(Message::new("")).unwrap() else { panic!("expected a forward") };
        assert_eq!(topic, "404");
    }
}

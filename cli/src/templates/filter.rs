//! A weir filter: keeps messages whose JSON `field` equals `value` (both from the config).
//! Numbers and booleans in the message compare by their text: `value=1` matches `{"a":1}`.

use weir_sdk::prelude::*;

#[derive(serde::Deserialize)]
struct Settings {
    field: String,
    value: String,
}

pub struct Keep(Settings);

impl Filter for Keep {
    fn init(config: &Config) -> Result<Self, Error> {
        Ok(Keep(config.deserialize()?))
    }

    fn filter(&mut self, msg: &Message) -> Result<bool, Error> {
        let doc: json::Value = msg.json()?;
        Ok(json::get_path(&doc, &self.0.field).map(json::as_text).as_deref() == Some(self.0.value.as_str()))
    }
}

weir_sdk::export!(Keep as filter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_matching_messages() {
        let mut f = Keep::init(&Config::from_pairs([("field", "status"), ("value", "paid")])).unwrap();
        assert!(f.filter(&Message::new(r#"{"status":"paid"}"#)).unwrap());
        assert!(!f.filter(&Message::new(r#"{"status":"new"}"#)).unwrap());
    }

    #[test]
    fn a_value_of_digits_is_text() {
        let mut f = Keep::init(&Config::from_pairs([("field", "a"), ("value", "1")])).unwrap();
        assert!(f.filter(&Message::new(r#"{"a":1}"#)).unwrap());
        assert!(f.filter(&Message::new(r#"{"a":"1"}"#)).unwrap());
        assert!(!f.filter(&Message::new(r#"{"a":2}"#)).unwrap());
    }
}

//! Picking a value out of a message by configuration: its key, a header, or a JSON field.
//! Shared by plugins that route, deduplicate or aggregate "by" something.

use crate::json::{Value, as_text, get_path};
use crate::{Error, Message};

/// What to read from a message: `key`, `header:NAME` or `field:PATH` (a dotted JSON path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The message key, as UTF-8.
    Key,
    /// A header's value.
    Header(String),
    /// A field of a JSON payload; strings without quotes, other values as JSON text.
    Field(String),
}

impl Selector {
    /// Parse `key`, `header:NAME` or `field:PATH`; `what` names the config key in errors.
    pub fn parse(what: &str, spec: &str) -> Result<Selector, Error> {
        match spec.split_once(':') {
            None if spec == "key" => Ok(Selector::Key),
            Some(("header", name)) if !name.is_empty() => Ok(Selector::Header(name.to_string())),
            Some(("field", path)) if !path.is_empty() => Ok(Selector::Field(path.to_string())),
            _ => Err(Error::fatal(format!(
                "config key `{what}` has invalid value {spec:?}: use key, header:NAME or field:PATH"
            ))),
        }
    }

    /// The selected value, if the message has it. A `field:` selector on a payload that is not
    /// JSON is an error (fatal: the payload is bad).
    pub fn select(&self, msg: &Message) -> Result<Option<String>, Error> {
        Ok(match self {
            Selector::Key => msg.key_str().map(str::to_string),
            Selector::Header(name) => msg.header(name).map(str::to_string),
            Selector::Field(path) => {
                let doc: Value = msg.json()?;
                get_path(&doc, path).filter(|v| !v.is_null()).map(|v| as_text(v).into_owned())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_key_header_and_field() {
        let m = Message::new(r#"{"order":{"region":"eu","n":3}}"#).with_key("k1").with_header("h", "v");
        assert_eq!(Selector::parse("by", "key").unwrap().select(&m).unwrap().as_deref(), Some("k1"));
        assert_eq!(Selector::parse("by", "header:h").unwrap().select(&m).unwrap().as_deref(), Some("v"));
        assert_eq!(Selector::parse("by", "field:order.region").unwrap().select(&m).unwrap().as_deref(), Some("eu"));
        assert_eq!(Selector::parse("by", "field:order.n").unwrap().select(&m).unwrap().as_deref(), Some("3"));
        assert_eq!(Selector::parse("by", "field:nope").unwrap().select(&m).unwrap(), None);
        let e = Selector::parse("by", "body").unwrap_err();
        assert!(e.message().contains("`by`"));
    }
}

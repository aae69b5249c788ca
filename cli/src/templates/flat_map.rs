//! A weir flat-map: one output per word of the payload, words split on `separator` (any
//! whitespace when unset).

use weir_sdk::prelude::*;

#[derive(serde::Deserialize)]
pub struct Words {
    #[serde(default)]
    separator: Option<String>,
}

impl FlatMap for Words {
    type In = String;
    type Out = String;

    fn init(config: &Config) -> Result<Self, Error> {
        config.deserialize()
    }

    fn flat_map(&mut self, text: String) -> Result<Vec<String>, Error> {
        Ok(match self.separator.as_deref() {
            None | Some("") => text.split_whitespace().map(str::to_string).collect(),
            Some(sep) => text.split(sep).filter(|w| !w.is_empty()).map(str::to_string).collect(),
        })
    }
}

weir_sdk::export!(Words as flat_map);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        let mut w = Words::init(&Config::default()).unwrap();
        assert_eq!(w.flat_map("a b  c".into()).unwrap(), vec!["a", "b", "c"]);
    }

    #[test]
    fn a_separator_of_digits_is_text() {
        let mut w = Words::init(&Config::from_pairs([("separator", "00")])).unwrap();
        assert_eq!(w.flat_map("a00b".into()).unwrap(), vec!["a", "b"]);
    }
}

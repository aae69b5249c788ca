//! `pass`: every message passes on unchanged. A step that does nothing is what the component
//! boundary costs alone (`weir bench`'s boundary stage measures it with this), and a
//! placeholder in a pipeline being assembled.

use weir_sdk::prelude::*;

/// Keeps everything.
pub struct Pass;

impl Filter for Pass {
    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&[])?;
        Ok(Pass)
    }

    fn filter(&mut self, _msg: &Message) -> Result<bool, Error> {
        Ok(true)
    }
}

weir_sdk::export!(Pass as filter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_and_takes_no_config() {
        let mut p = Pass::init(&Config::default()).unwrap();
        assert!(p.filter(&Message::new("x")).unwrap());
        assert!(Pass::init(&Config::from_pairs([("typo", "1")])).is_err());
    }
}

//! `json-transform`: renames, drops and sets fields of JSON messages.
//!
//! Config (paths are dotted, e.g. `customer.email`); applied in this order:
//!
//! | key | meaning |
//! |---|---|
//! | `rename.<from>` = `<to>` | move the value at `from` to `to` (absent `from`: nothing happens) |
//! | `drop` = `a,b.c` | remove these paths |
//! | `set.<path>` = `<value>` | set `path`; the value is JSON if it parses (`42`, `true`, `{"a":1}`), else a string |
//!
//! Values of `set.` may name where they run: `${weir.pipeline}`, `${weir.step}`,
//! `${weir.plugin}`, `${weir.version}` — e.g. `set.processed_by=${weir.plugin}@${weir.version}`
//! tags each output with the plugin version that produced it.
//!
//! With `reply = true` the result is sent as the reply to a request (`weir request`): to the
//! message's `weir-reply-to` topic with its correlation id.
//!
//! The key, headers and routing of the message are kept. A payload that is not a JSON object
//! fails (fatal) and the pipeline's failure policy decides.

use weir_sdk::json::{Value, parse_value, remove_path, set_path};
use weir_sdk::prelude::*;

/// The configured transformation.
pub struct JsonTransform {
    renames: Vec<(String, String)>,
    drops: Vec<String>,
    sets: Vec<(String, Value)>,
    reply: bool,
}

impl Map for JsonTransform {
    type In = Message;
    type Out = Output;

    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["rename.", "drop", "set.", "reply"])?;
        let renames: Vec<_> = config.with_prefix("rename.").map(|(f, t)| (f.to_string(), t.to_string())).collect();
        let drops = config
            .get("drop")
            .map(|d| d.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        let sets: Vec<_> =
            config.with_prefix("set.").map(|(p, v)| (p.to_string(), parse_value(&config.expand(v)))).collect();
        if let Some((_, to)) = renames.iter().find(|(_, to)| to.is_empty()) {
            return Err(Error::fatal(format!("config key `rename.` needs a target path, got {to:?}")));
        }
        Ok(JsonTransform { renames, drops, sets, reply: config.parse_or("reply", false)? })
    }

    fn map(&mut self, msg: Message) -> Result<Output, Error> {
        let mut doc: Value = msg.json()?;
        if !doc.is_object() {
            return Err(Error::fatal("payload is JSON but not an object"));
        }
        self.apply(&mut doc)?;
        let value = weir_sdk::serde_json::to_vec(&doc)?;
        if self.reply {
            return Output::reply(&msg, value);
        }
        Ok(Output::replacing(&msg, value))
    }
}

impl JsonTransform {
    fn apply(&self, doc: &mut Value) -> Result<(), Error> {
        for (from, to) in &self.renames {
            if let Some(v) = remove_path(doc, from)
                && !set_path(doc, to, v)
            {
                return Err(Error::fatal(format!(
                    "cannot rename `{from}` to `{to}`: a parent of `{to}` is not an object"
                )));
            }
        }
        for path in &self.drops {
            remove_path(doc, path);
        }
        for (path, value) in &self.sets {
            if !set_path(doc, path, value.clone()) {
                return Err(Error::fatal(format!("cannot set `{path}`: a parent is not an object")));
            }
        }
        Ok(())
    }
}

weir_sdk::export_map!(JsonTransform);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::json::json;

    fn run(pairs: &[(&str, &str)], doc: &str) -> Result<Value, Error> {
        let mut t = JsonTransform::init(&Config::from_pairs(pairs.iter().copied()))?;
        let out = t.map(Message::new(doc).with_key("k"))?;
        assert_eq!(out.key.as_deref(), Some(&b"k"[..]), "key is kept");
        Ok(weir_sdk::serde_json::from_slice(&out.value).unwrap())
    }

    #[test]
    fn renames_drops_and_sets_in_order() {
        let out = run(
            &[("rename.user.mail", "email"), ("drop", "secret, user.tmp"), ("set.meta.v", "2"), ("set.source", "web")],
            r#"{"user":{"mail":"a@b","tmp":1,"name":"x"},"secret":"s"}"#,
        )
        .unwrap();
        assert_eq!(out, json!({"user":{"name":"x"},"email":"a@b","meta":{"v":2},"source":"web"}));
    }

    #[test]
    fn rejects_non_objects_and_bad_config() {
        assert!(run(&[("set.a", "1")], "[1,2]").is_err());
        assert!(run(&[("set.a", "1")], "nope").is_err());
        let e = JsonTransform::init(&Config::from_pairs([("sett.a", "1")])).err().unwrap();
        assert!(e.message().contains("`sett.a`"), "{e}");
    }
}

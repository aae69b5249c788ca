//! `router`: sends each message to a topic chosen by a header, a JSON field or the key.
//!
//! Config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `by` | what to route on: `key`, `header:NAME`, `field:PATH` | required |
//! | `route.<value>` | topic for messages whose value is `<value>` | — |
//! | `template` | topic for other values, with `{}` replaced by the value, e.g. `orders-{}` | — |
//! | `default` | messages matching no route (or lacking the value): a topic, `pass` (on to the next step or the sink), or `drop` | `pass` |
//!
//! The message itself (key, payload, headers) is unchanged. Topics must exist: routing to a
//! missing topic fails the batch and the pipeline's policy decides.

use std::collections::BTreeMap;

use weir_sdk::prelude::*;

/// Where unmatched messages go.
enum Fallback {
    Pass,
    Drop,
    Topic(String),
}

/// The configured router.
pub struct Router {
    by: Selector,
    routes: BTreeMap<String, String>,
    template: Option<String>,
    fallback: Fallback,
}

impl Plugin for Router {
    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["by", "route.", "template", "default"])?;
        let by = Selector::parse("by", config.require("by")?)?;
        let routes: BTreeMap<String, String> =
            config.with_prefix("route.").map(|(v, t)| (v.to_string(), t.to_string())).collect();
        if let Some((v, _)) = routes.iter().find(|(_, t)| t.is_empty()) {
            return Err(Error::fatal(format!("config key `route.{v}` needs a topic name")));
        }
        let template = config.get("template").map(str::to_string);
        if template.as_ref().is_some_and(|t| !t.contains("{}")) {
            return Err(Error::fatal("config key `template` must contain {} where the value goes"));
        }
        let fallback = match config.get("default").unwrap_or("pass") {
            "pass" => Fallback::Pass,
            "drop" => Fallback::Drop,
            "" => return Err(Error::fatal("config key `default` is empty: use pass, drop or a topic")),
            topic => Fallback::Topic(topic.to_string()),
        };
        if routes.is_empty() && template.is_none() {
            return Err(Error::fatal("give at least one `route.<value>=<topic>` or a `template`"));
        }
        Ok(Router { by, routes, template, fallback })
    }

    fn process(&mut self, msg: Message) -> Result<Outcome, Error> {
        let value = self.by.select(&msg)?;
        let topic = value.as_deref().and_then(|v| {
            self.routes.get(v).cloned().or_else(|| self.template.as_ref().map(|t| t.replace("{}", &topic_safe(v))))
        });
        Ok(match (topic, &self.fallback) {
            (Some(t), _) => Outcome::Forward(t),
            (None, Fallback::Topic(t)) => Outcome::Forward(t.clone()),
            (None, Fallback::Pass) => Outcome::forward(msg),
            (None, Fallback::Drop) => Outcome::Drop,
        })
    }
}

/// Characters a topic name allows; anything else in a routed value becomes `_`.
fn topic_safe(v: &str) -> String {
    v.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

weir_sdk::export!(Router);

#[cfg(test)]
mod tests {
    use super::*;

    fn router(pairs: &[(&str, &str)]) -> Router {
        Router::init(&Config::from_pairs(pairs.iter().copied())).unwrap()
    }

    fn dest(r: &mut Router, m: Message) -> Option<Option<String>> {
        match r.process(m).unwrap() {
            Outcome::Emit(o) => Some(o[0].topic.clone()),
            Outcome::Forward(t) => Some(Some(t)),
            Outcome::Keep => Some(None),
            Outcome::Drop => None,
        }
    }

    #[test]
    fn routes_by_field_with_template_and_fallback() {
        let mut r = router(&[("by", "field:region"), ("route.eu", "orders-europe"), ("template", "orders-{}")]);
        assert_eq!(dest(&mut r, Message::new(r#"{"region":"eu"}"#)), Some(Some("orders-europe".into())));
        assert_eq!(dest(&mut r, Message::new(r#"{"region":"us west"}"#)), Some(Some("orders-us_west".into())));
        assert_eq!(dest(&mut r, Message::new(r#"{}"#)), Some(None), "unmatched passes on");
        let mut d = router(&[("by", "header:weir-type"), ("route.A", "a"), ("default", "drop")]);
        assert_eq!(dest(&mut d, Message::new("x").with_header("weir-type", "A")), Some(Some("a".into())));
        assert_eq!(dest(&mut d, Message::new("x").with_header("weir-type", "B")), None);
        let mut k = router(&[("by", "key"), ("route.k", "kk"), ("default", "rest")]);
        assert_eq!(dest(&mut k, Message::new("x")), Some(Some("rest".into())));
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |pairs: &[(&str, &str)]| Router::init(&Config::from_pairs(pairs.iter().copied())).err().unwrap();
        assert!(err(&[("route.a", "x")]).message().contains("`by`"));
        assert!(err(&[("by", "nope")]).message().contains("`by`"));
        assert!(err(&[("by", "key"), ("template", "x")]).message().contains("`template`"));
        assert!(err(&[("by", "key")]).message().contains("route."));
    }
}

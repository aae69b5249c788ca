//! A step's configuration: the `key=value` pairs given when the pipeline was created.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::Error;

/// The `key=value` configuration of one pipeline step.
///
/// Every accessor names the key in its error, so a bad deploy says which setting to fix.
///
/// The host adds reserved keys naming where the plugin runs — `weir.pipeline`, `weir.step`,
/// `weir.plugin`, `weir.version` — which are kept apart from the step's own keys: read them
/// with [`Config::reserved`] (or [`Config::version`]); they never count as unknown keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: BTreeMap<String, String>,
    reserved: BTreeMap<String, String>,
}

/// Prefix of the keys the host adds.
const RESERVED: &str = "weir.";

impl Config {
    /// Build a config from pairs (later duplicates win).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        let (reserved, entries) =
            pairs.into_iter().map(|(k, v)| (k.into(), v.into())).partition(|(k, _)| k.starts_with(RESERVED));
        Config { entries, reserved }
    }

    /// A reserved key set by the host: `pipeline`, `step`, `plugin` or `version`.
    pub fn reserved(&self, name: &str) -> Option<&str> {
        self.reserved.get(&format!("{RESERVED}{name}")).map(String::as_str)
    }

    /// The version of this plugin that is running (`None` outside a server, e.g. in tests).
    pub fn version(&self) -> Option<u32> {
        self.reserved("version").and_then(|v| v.parse().ok())
    }

    /// Replace `${weir.pipeline}`, `${weir.step}`, `${weir.plugin}` and `${weir.version}` in
    /// `text` with the reserved values (left as is when unknown).
    pub fn expand(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (k, v) in &self.reserved {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        out
    }

    /// The raw value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// The raw value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key).ok_or_else(|| Error::fatal(format!("missing config key `{key}`")))
    }

    /// `key` parsed as `T`, or an error naming the key and the bad value.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e| Error::fatal(format!("config key `{key}` has invalid value {raw:?}: {e}"))),
        }
    }

    /// `key` parsed as `T`, or `default` when it is not set.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// `key` as a duration in milliseconds (`500ms`, `10s`, `5m`, `24h`, `7d`), or `default`.
    pub fn duration_ms_or(&self, key: &str, default: u64) -> Result<u64, Error> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => parse_duration_ms(raw).ok_or_else(|| {
                Error::fatal(format!(
                    "config key `{key}` has invalid duration {raw:?}: use e.g. 500ms, 10s, 5m, 24h, 7d"
                ))
            }),
        }
    }

    /// The step's keys as a typed struct (serde). A value reaches a `String` field as written
    /// (`007`, `1`, `true` stay text); it is parsed only where the field's type asks: numbers,
    /// booleans, `std::time::Duration` (`500ms`, `10s`, `5m`), lists (`a,b` or `["a","b"]`),
    /// enums by variant name. Dotted keys (`limits.max`) become nested structs. Errors name
    /// the key, e.g. "config key `min`: invalid value: string \"ten\", expected u64".
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        let mut doc = crate::config_de::Node::Map(BTreeMap::new());
        for (k, v) in &self.entries {
            if !doc.insert(k, v.clone()) {
                return Err(Error::fatal(format!("config key `{k}` conflicts with another key")));
            }
        }
        serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                Error::fatal(format!("config: {inner}"))
            } else {
                Error::fatal(format!("config key `{path}`: {inner}"))
            }
        })
    }

    /// All keys starting with `prefix`, with the prefix removed, in key order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entries.iter().filter_map(move |(k, v)| k.strip_prefix(prefix).map(|rest| (rest, v.as_str())))
    }

    /// Every `(key, value)` pair, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Fail naming the first key not in `known`, so a typo does not pass silently.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), Error> {
        match self.entries.keys().find(|k| !known.iter().any(|p| key_matches(k, p))) {
            None => Ok(()),
            Some(k) => Err(Error::fatal(format!("unknown config key `{k}` (known keys: {})", known.join(", ")))),
        }
    }
}

/// `500ms`, `10s`, `5m`, `24h`, `7d` in milliseconds; a bare number is milliseconds.
pub(crate) fn parse_duration_ms(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (n, unit) = raw.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `pattern` is a key, or a prefix ending in `.` that admits any key below it.
fn key_matches(key: &str, pattern: &str) -> bool {
    if pattern.ends_with('.') { key.starts_with(pattern) } else { key == pattern }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let c = Config::from_pairs([("min", "ten")]);
        let e = c.parse::<u64>("min").unwrap_err();
        assert!(e.message().contains("`min`"), "{e}");
        assert!(c.require("max").unwrap_err().message().contains("`max`"));
        assert_eq!(c.parse_or("other", 7u64).unwrap(), 7);
    }

    #[test]
    fn typed_config_names_the_bad_key() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct S {
            min: u64,
            #[serde(default)]
            tags: Vec<String>,
            limits: Limits,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Limits {
            max: u32,
        }
        let ok: S =
            Config::from_pairs([("min", "3"), ("tags", r#"["a"]"#), ("limits.max", "9")]).deserialize().unwrap();
        assert_eq!((ok.min, ok.tags, ok.limits.max), (3, vec!["a".to_string()], 9));
        let e = Config::from_pairs([("min", "ten"), ("limits.max", "1")]).deserialize::<S>().unwrap_err();
        assert!(e.message().contains("config key `min`"), "{e}");
        let e = Config::from_pairs([("min", "1"), ("limits.max", "-1")]).deserialize::<S>().unwrap_err();
        assert!(e.message().contains("`limits.max`"), "{e}");
        let e = Config::from_pairs([("min", "1"), ("limits.max", "1"), ("typo", "x")]).deserialize::<S>().unwrap_err();
        assert!(e.message().contains("typo"), "{e}");
    }

    /// Issue 20: a value that looks like a number is still text for a text field.
    #[test]
    fn string_fields_take_the_text_as_written() {
        #[derive(serde::Deserialize, Debug)]
        struct S {
            field: String,
            value: String,
            #[serde(default)]
            maybe: Option<String>,
        }
        for raw in ["1", "true", "1.5", "007", "-0", "null", "[1]", "{\"a\":1}"] {
            let s: S = Config::from_pairs([("field", "a"), ("value", raw), ("maybe", raw)]).deserialize().unwrap();
            assert_eq!((s.value.as_str(), s.maybe.as_deref()), (raw, Some(raw)));
            assert_eq!(s.field, "a");
        }
    }

    #[test]
    fn typed_fields_parse_only_what_they_ask_for() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(rename_all = "kebab-case")]
        enum Mode {
            Strict,
            Lenient,
        }
        #[derive(serde::Deserialize, Debug)]
        struct S {
            n: u32,
            x: f64,
            on: bool,
            every: std::time::Duration,
            tags: Vec<String>,
            ids: Vec<u64>,
            mode: Mode,
            zip: String,
        }
        let s: S = Config::from_pairs([
            ("n", "42"),
            ("x", "1.5"),
            ("on", "true"),
            ("every", "1500ms"),
            ("tags", "a, b"),
            ("ids", "[1,2]"),
            ("mode", "lenient"),
            ("zip", "02134"),
        ])
        .deserialize()
        .unwrap();
        assert_eq!((s.n, s.x, s.on), (42, 1.5, true));
        assert_eq!(s.every, std::time::Duration::from_millis(1500));
        assert_eq!((s.tags, s.ids), (vec!["a".to_string(), "b".to_string()], vec![1, 2]));
        assert_eq!((s.mode, s.zip.as_str()), (Mode::Lenient, "02134"));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct N {
            n: u32,
        }
        let e = Config::from_pairs([("n", "abc")]).deserialize::<N>().unwrap_err();
        assert!(e.message().contains("config key `n`") && e.message().contains("\"abc\""), "{e}");
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct D {
            every: std::time::Duration,
        }
        let e = Config::from_pairs([("every", "soon")]).deserialize::<D>().unwrap_err();
        assert!(e.message().contains("config key `every`") && e.message().contains("10s"), "{e}");
    }

    #[test]
    fn durations_parse() {
        let c = Config::from_pairs([("w", "5m"), ("bad", "5 weeks")]);
        assert_eq!(c.duration_ms_or("w", 0).unwrap(), 300_000);
        assert_eq!(c.duration_ms_or("none", 7).unwrap(), 7);
        assert!(c.duration_ms_or("bad", 0).unwrap_err().message().contains("`bad`"));
    }

    #[test]
    fn reserved_keys_are_apart_and_expand() {
        let c = Config::from_pairs([
            ("weir.version", "7"),
            ("weir.plugin", "p"),
            ("tag", "${weir.plugin}@${weir.version}"),
        ]);
        assert_eq!(c.version(), Some(7));
        assert!(c.reject_unknown(&["tag"]).is_ok());
        assert_eq!(c.expand(c.get("tag").unwrap()), "p@7");
        assert_eq!(c.iter().count(), 1);
    }

    #[test]
    fn unknown_keys_are_rejected_and_prefixes_admitted() {
        let c = Config::from_pairs([("set.a", "1"), ("field", "x")]);
        assert!(c.reject_unknown(&["field", "set."]).is_ok());
        let e = c.reject_unknown(&["field"]).unwrap_err();
        assert!(e.message().contains("`set.a`"), "{e}");
    }
}

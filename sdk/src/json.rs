//! JSON helpers shared by plugins: dotted paths into `serde_json::Value` documents.
//!
//! A path is field names joined by `.`: `customer.address.city`. Array elements are addressed
//! by index: `items.0.sku`.

pub use serde_json::{Map, Value, json};

/// The value at `path`, if every segment exists.
pub fn get_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Mutable access to the value at `path`, if every segment exists.
pub fn get_path_mut<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(doc, |v, seg| match v {
        Value::Object(m) => m.get_mut(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
        _ => None,
    })
}

/// Set `path` to `value`, creating intermediate objects. Fails (returning `false`) when a
/// segment on the way is a scalar, which would have to be overwritten.
pub fn set_path(doc: &mut Value, path: &str, value: Value) -> bool {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (Some(p), l),
        None => (None, path),
    };
    let mut cur = doc;
    if let Some(parent) = parent {
        for seg in parent.split('.') {
            if cur.is_null() {
                *cur = Value::Object(Map::new());
            }
            cur = match cur {
                Value::Object(m) => m.entry(seg).or_insert(Value::Null),
                Value::Array(a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                    Some(v) => v,
                    None => return false,
                },
                _ => return false,
            };
        }
    }
    if cur.is_null() {
        *cur = Value::Object(Map::new());
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.to_string(), value);
            true
        }
        Value::Array(a) => match last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// Remove and return the value at `path`.
pub fn remove_path(doc: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (get_path_mut(doc, p)?, l),
        None => (doc, path),
    };
    match parent {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => {
            let i = last.parse::<usize>().ok().filter(|i| *i < a.len())?;
            Some(a.remove(i))
        }
        _ => None,
    }
}

/// The value at `path` in the JSON document `doc`, found without building the rest of the
/// document: objects on the way are scanned key by key and everything else is skipped, so a
/// lookup costs little more than validating the bytes. `Ok(None)` when the path is absent.
pub fn find(doc: &[u8], path: &str) -> Result<Option<Value>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(doc);
    let found = serde::de::DeserializeSeed::deserialize(Find { rest: Some(path) }, &mut de)?;
    de.end()?;
    Ok(found)
}

/// Walks one level of a path: in an object, the matching key's value is searched deeper and
/// the rest skipped; in an array, the element with the segment's index. The path is split as
/// it is walked, so a lookup allocates nothing but the value it returns.
#[derive(Clone, Copy)]
struct Find<'p> {
    /// The segments still to walk, dot-separated; `None` once the value is reached.
    rest: Option<&'p str>,
}

impl<'p> Find<'p> {
    /// This level's segment, and the seed for the level below.
    fn step(self) -> (&'p str, Find<'p>) {
        let rest = self.rest.unwrap_or_default();
        match rest.split_once('.') {
            Some((segment, deeper)) => (segment, Find { rest: Some(deeper) }),
            None => (rest, Find { rest: None }),
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Find<'_> {
    type Value = Option<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.rest.is_none() {
            return <Value as serde::Deserialize>::deserialize(d).map(Some);
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Find<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (want, deeper) = self.step();
        let mut found = None;
        while let Some(is_wanted) = map.next_key_seed(KeyIs(want))? {
            if found.is_none() && is_wanted {
                found = map.next_value_seed(deeper)?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (segment, deeper) = self.step();
        let want: Option<usize> = segment.parse().ok();
        let mut found = None;
        let mut i = 0;
        loop {
            if Some(i) == want {
                match seq.next_element_seed(deeper)? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Whether a map key equals the wanted path segment, compared where the key lies (a `String`
/// or `Cow` key would allocate for every key of every message).
struct KeyIs<'w>(&'w str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// A config value as JSON: valid JSON text is taken as such (`42`, `true`, `{"a":1}`),
/// anything else as a string. `"42"` in quotes stays a string.
pub fn parse_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// The text a value compares as: strings without quotes, everything else as compact JSON.
pub fn as_text(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table the Python and JavaScript SDKs' tests hold their JSON writers to: it is
    /// serde_json's output, so check it here against serde_json itself.
    #[test]
    fn the_cross_language_json_table_is_what_serde_json_writes() {
        let table: Vec<Value> = serde_json::from_str(include_str!("../testdata/json-text.json")).expect("the table");
        assert!(table.len() >= 6);
        for case in table {
            let doc: Value = serde_json::from_str(case["in"].as_str().expect("in")).expect("valid JSON");
            assert_eq!(
                serde_json::to_string(&doc).expect("written"),
                case["rust"].as_str().expect("rust"),
                "{}",
                case["case"]
            );
        }
    }

    #[test]
    fn paths_read_write_and_remove() {
        let mut doc = json!({"a": {"b": [1, {"c": "x"}]}});
        assert_eq!(get_path(&doc, "a.b.1.c"), Some(&json!("x")));
        assert_eq!(get_path(&doc, "a.z"), None);
        assert!(set_path(&mut doc, "a.new.deep", json!(5)));
        assert_eq!(get_path(&doc, "a.new.deep"), Some(&json!(5)));
        assert!(!set_path(&mut doc, "a.new.deep.more", json!(1)), "cannot descend into a number");
        assert_eq!(remove_path(&mut doc, "a.b.0"), Some(json!(1)));
        assert_eq!(get_path(&doc, "a.b.0.c"), Some(&json!("x")));
    }

    #[test]
    fn find_reads_one_path_without_building_the_document() {
        let doc = br#"{"a":{"b":[1,{"c":"x\"y"}],"skip":{"deep":[1,2,3]}},"n":7}"#;
        assert_eq!(find(doc, "a.b.1.c").unwrap(), Some(json!("x\"y")));
        assert_eq!(find(doc, "n").unwrap(), Some(json!(7)));
        assert_eq!(find(doc, "a.skip").unwrap(), Some(json!({"deep":[1,2,3]})));
        assert_eq!(find(doc, "a.b.5").unwrap(), None);
        assert_eq!(find(doc, "n.x").unwrap(), None);
        assert_eq!(find(doc, "zzz").unwrap(), None);
        assert_eq!(find(br#"{"x":1,"a\u0062":2}"#, "ab").unwrap(), Some(json!(2)), "escaped keys compare decoded");
        assert!(find(b"{not json", "a").is_err());
        assert!(find(br#"{"a":1} trailing"#, "a").is_err());
    }

    #[test]
    fn config_values_parse_as_json_or_text() {
        assert_eq!(parse_value("42"), json!(42));
        assert_eq!(parse_value("\"42\""), json!("42"));
        assert_eq!(parse_value("paid"), json!("paid"));
        assert_eq!(as_text(&json!("paid")), "paid");
        assert_eq!(as_text(&json!(42)), "42");
    }
}

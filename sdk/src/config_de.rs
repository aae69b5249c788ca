//! The serde deserializer behind [`crate::Config::deserialize`]: config arrives as text, so a
//! value reaches a field as written, and is parsed only where the field's type asks for it —
//! numbers, booleans, durations (`std::time::Duration` from `500ms`, `10s`, `5m`), lists
//! (`a,b` or JSON `["a","b"]`) and nested structs (dotted keys, or a JSON object).

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserializer, Error as _, IntoDeserializer, Unexpected, Visitor};

/// A config value: text as written, or the keys below a dotted prefix.
#[derive(Debug)]
pub(crate) enum Node {
    /// One `key=value` value.
    Text(String),
    /// `prefix.a=…`, `prefix.b=…`.
    Map(BTreeMap<String, Node>),
}

impl Node {
    /// Put `value` at the dotted `path` of a map; `false` if the path runs into a value.
    pub(crate) fn insert(&mut self, path: &str, value: String) -> bool {
        let Node::Map(map) = self else { return false };
        match path.split_once('.') {
            None => match map.get(path) {
                Some(_) => false,
                None => {
                    map.insert(path.to_string(), Node::Text(value));
                    true
                }
            },
            Some((head, rest)) => {
                map.entry(head.to_string()).or_insert_with(|| Node::Map(BTreeMap::new())).insert(rest, value)
            }
        }
    }
}

impl<'de> IntoDeserializer<'de, Error> for Node {
    type Deserializer = Node;
    fn into_deserializer(self) -> Node {
        self
    }
}

/// `text` parsed as a number (or a boolean), or an error saying what was expected.
fn parse<T: FromStr>(text: &str, expected: &dyn de::Expected) -> Result<T, Error> {
    text.trim().parse().map_err(|_| Error::invalid_value(Unexpected::Str(text), expected))
}

/// Text that is a JSON document, handed to serde_json (lists and objects written as JSON).
fn json(text: &str) -> Option<serde_json::Value> {
    let t = text.trim_start();
    if t.starts_with('[') || t.starts_with('{') { serde_json::from_str(text).ok() } else { None }
}

macro_rules! numbers {
    ($($method:ident $visit:ident $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self {
                Node::Text(s) => {
                    let v = parse::<$t>(&s, &visitor)?;
                    visitor.$visit(v)
                }
                Node::Map(_) => Err(Error::invalid_type(Unexpected::Map, &visitor)),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Node {
    type Error = Error;

    /// Without a type to ask for, text stays text.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Text(s) => visitor.visit_string(s),
            Node::Map(m) => visitor.visit_map(MapDeserializer::new(m.into_iter())),
        }
    }

    numbers!(
        deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16, deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64, deserialize_i128 visit_i128 i128,
        deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16, deserialize_u32 visit_u32 u32,
        deserialize_u64 visit_u64 u64, deserialize_u128 visit_u128 u128,
        deserialize_f32 visit_f32 f32, deserialize_f64 visit_f64 f64,
        deserialize_bool visit_bool bool, deserialize_char visit_char char
    );

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Text(s) => visitor.visit_string(s),
            Node::Map(_) => Err(Error::invalid_type(Unexpected::Map, &visitor)),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Text(s) => visitor.visit_byte_buf(s.into_bytes()),
            Node::Map(_) => Err(Error::invalid_type(Unexpected::Map, &visitor)),
        }
    }

    /// A key that is set is `Some`, whatever its text.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// `a,b,c`, or a JSON array.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Text(s) => match json(&s) {
                Some(v) => v.deserialize_seq(visitor).map_err(Error::custom),
                None => {
                    let items: Vec<Node> = if s.trim().is_empty() {
                        Vec::new()
                    } else {
                        s.split(',').map(|i| Node::Text(i.trim().to_string())).collect()
                    };
                    visitor.visit_seq(SeqDeserializer::new(items.into_iter()))
                }
            },
            Node::Map(_) => Err(Error::invalid_type(Unexpected::Map, &visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Node::Map(m) => visitor.visit_map(MapDeserializer::new(m.into_iter())),
            Node::Text(s) => match json(&s) {
                Some(v) => v.deserialize_map(visitor).map_err(Error::custom),
                None => Err(Error::invalid_type(Unexpected::Str(&s), &visitor)),
            },
        }
    }

    /// `std::time::Duration` from `500ms`, `10s`, `5m`, `24h`, `7d`; other structs from dotted
    /// keys or a JSON object.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::Text(s) if name == "Duration" && fields == ["secs", "nanos"] => {
                let ms = crate::config::parse_duration_ms(&s).ok_or_else(|| {
                    Error::invalid_value(Unexpected::Str(&s), &"a duration such as 500ms, 10s, 5m, 24h or 7d")
                })?;
                let parts = [("secs", (ms / 1000).to_string()), ("nanos", ((ms % 1000) * 1_000_000).to_string())];
                visitor.visit_map(MapDeserializer::new(parts.into_iter().map(|(k, v)| (k, Node::Text(v)))))
            }
            other => other.deserialize_map(visitor),
        }
    }

    /// Unit variants by name (`mode=strict`), others as JSON.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Node::Text(s) => match json(&s) {
                Some(v) => v.deserialize_enum(name, variants, visitor).map_err(Error::custom),
                None => visitor.visit_enum(s.into_deserializer()),
            },
            Node::Map(_) => Err(Error::invalid_type(Unexpected::Map, &visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

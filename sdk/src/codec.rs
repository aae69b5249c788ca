//! Typed payloads: what a kind receives ([`FromMessage`]) and what it returns
//! ([`IntoOutput`]). `Json<T>` and `MsgPack<T>` decode and encode through serde; `Message`
//! and `Output` pass through untouched.

use serde::{Serialize, de::DeserializeOwned};

use crate::{Error, Message, Output};

/// A payload decoded from (or encoded to) JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

/// A payload decoded from (or encoded to) MessagePack, with field names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MsgPack<T>(pub T);

/// Everything about a message but its payload: what typed kinds see beside the decoded value,
/// and what their outputs inherit (key and headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Append time of the source message.
    pub timestamp_ms: u64,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: u64,
}

impl Meta {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The key as UTF-8, if any.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }
}

impl Message {
    /// The message without its payload.
    pub fn meta(&self) -> Meta {
        Meta {
            key: self.key().map(<[u8]>::to_vec),
            headers: self.headers().to_vec(),
            timestamp_ms: self.timestamp_ms(),
            partition: self.partition(),
            offset: self.offset(),
        }
    }
}

/// Something a kind can take as input.
pub trait FromMessage: Sized {
    /// Decode `msg`; a payload that does not decode is a fatal error.
    fn from_message(msg: Message) -> Result<Self, Error>;
}

impl FromMessage for Message {
    fn from_message(msg: Message) -> Result<Self, Error> {
        Ok(msg)
    }
}

impl<T: DeserializeOwned> FromMessage for Json<T> {
    fn from_message(msg: Message) -> Result<Self, Error> {
        msg.json().map(Json)
    }
}

impl<T: DeserializeOwned> FromMessage for MsgPack<T> {
    fn from_message(msg: Message) -> Result<Self, Error> {
        msg.msgpack().map(MsgPack)
    }
}

impl FromMessage for Vec<u8> {
    fn from_message(msg: Message) -> Result<Self, Error> {
        Ok(msg.into_value())
    }
}

impl FromMessage for String {
    fn from_message(msg: Message) -> Result<Self, Error> {
        String::from_utf8(msg.into_value()).map_err(|e| Error::fatal(format!("payload is not UTF-8: {e}")))
    }
}

/// Something a kind can return as an output; encoded payloads inherit the input's key and
/// headers.
pub trait IntoOutput {
    /// Encode, taking key and headers from `meta`.
    fn into_output(self, meta: &Meta) -> Result<Output, Error>;
}

fn inherit(value: Vec<u8>, meta: &Meta) -> Output {
    Output { key: meta.key.clone(), value, headers: meta.headers.clone(), topic: None }
}

impl IntoOutput for Output {
    fn into_output(self, _meta: &Meta) -> Result<Output, Error> {
        Ok(self)
    }
}

impl<T: Serialize> IntoOutput for Json<T> {
    fn into_output(self, meta: &Meta) -> Result<Output, Error> {
        Ok(inherit(serde_json::to_vec(&self.0)?, meta))
    }
}

impl<T: Serialize> IntoOutput for MsgPack<T> {
    fn into_output(self, meta: &Meta) -> Result<Output, Error> {
        Ok(inherit(rmp_serde::to_vec_named(&self.0)?, meta))
    }
}

impl IntoOutput for Vec<u8> {
    fn into_output(self, meta: &Meta) -> Result<Output, Error> {
        Ok(inherit(self, meta))
    }
}

impl IntoOutput for String {
    fn into_output(self, meta: &Meta) -> Result<Output, Error> {
        Ok(inherit(self.into_bytes(), meta))
    }
}

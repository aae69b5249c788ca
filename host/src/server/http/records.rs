//! Records and queue messages as JSON. Going in, a value is any JSON (a string is stored as
//! its text, anything else as its compact JSON) or base64 bytes; coming out, a value is its
//! text when it is UTF-8, else base64. Keys alike. So JSON and text round-trip as they were,
//! and binary data is never mangled.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiError;
use super::int::present;
use crate::queue::{Delivery, NewQueueMessage};
use crate::storage::{NewRecord, StoredRecord};

/// A record to produce.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InRecord {
    /// Partitioning key, as text.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    key: Option<Option<String>>,
    /// Partitioning key, as base64 bytes (instead of `key`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, content_encoding = "base64", format = Byte)]
    key_base64: Option<Option<String>>,
    /// Payload: a string is stored as its text; any other JSON (null too) as its compact
    /// encoding. This or `value_base64`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = serde_json::Value)]
    value: Option<Option<serde_json::Value>>,
    /// Payload as base64 bytes (instead of `value`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, content_encoding = "base64", format = Byte)]
    value_base64: Option<Option<String>>,
    /// Metadata (at most 64 headers).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl InRecord {
    /// The record; `at` names it in errors ("records[3]").
    pub(super) fn into_record(self, at: &str) -> Result<NewRecord, ApiError> {
        // A null key alone is no key (beside `key_base64`, it is both); a null value is the
        // JSON `null`.
        let key = match self.key {
            Some(None) if self.key_base64.is_none() => None,
            key => key.map(|k| k.map(serde_json::Value::String)),
        };
        let key = bytes_of(key, self.key_base64, &format!("{at}.key"))?;
        let value = bytes_of(self.value, self.value_base64, &format!("{at}.value"))?.ok_or_else(|| {
            ApiError::bad_request(format!("{at} has no value: give `value` (JSON) or `value_base64`"))
        })?;
        Ok(NewRecord { key, value, headers: self.headers.into_iter().collect() })
    }
}

/// The bytes of a JSON field or its base64 twin: at most one of them present (the document
/// says so with `not: required both`, so even a null beside the other is refused).
fn bytes_of(
    json: Option<Option<serde_json::Value>>,
    b64: Option<Option<String>>,
    what: &str,
) -> Result<Option<Bytes>, ApiError> {
    match (json, b64) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!("{what}: give it as JSON or as base64, not both"))),
        (Some(Some(serde_json::Value::String(s))), None) => Ok(Some(Bytes::from(s))),
        (Some(Some(v)), None) => Ok(Some(Bytes::from(v.to_string()))),
        (Some(None), None) => Ok(Some(Bytes::from_static(b"null"))),
        (None, Some(Some(b))) => B64
            .decode(b.as_bytes())
            .map(|v| Some(Bytes::from(v)))
            .map_err(|e| ApiError::bad_request(format!("{what}_base64 is not valid base64: {e}"))),
        (None, Some(None)) => {
            Err(ApiError::bad_request(format!("{what}_base64 is null: give base64 text or leave it out")))
        }
        (None, None) => Ok(None),
    }
}

/// A stored record.
#[derive(Serialize, ToSchema)]
pub(super) struct OutRecord {
    /// Partition (absent on a reply to a request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Offset in the partition.
    pub offset: u64,
    /// Append time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Key, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Key as base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// Value, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value as base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Metadata.
    pub headers: BTreeMap<String, String>,
}

impl OutRecord {
    pub(super) fn new(partition: Option<u32>, r: StoredRecord) -> OutRecord {
        let (key, key_base64) = match r.key {
            None => (None, None),
            Some(k) => text_or_base64(&k),
        };
        let (value, value_base64) = text_or_base64(&r.value);
        OutRecord {
            partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key,
            key_base64,
            value,
            value_base64,
            headers: r.headers.into_iter().collect(),
        }
    }
}

fn text_or_base64(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(B64.encode(b))),
    }
}

/// A message to send to a queue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InMessage {
    /// Payload: a string is stored as its text; any other JSON (null too) as its compact
    /// encoding. This or `body_base64`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = serde_json::Value)]
    body: Option<Option<serde_json::Value>>,
    /// Payload as base64 bytes (instead of `body`).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, content_encoding = "base64", format = Byte)]
    body_base64: Option<Option<String>>,
    /// Metadata (at most 64 headers).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// 0 (lowest, the default) to 9.
    #[serde(default, deserialize_with = "super::int::one")]
    #[schema(minimum = 0, maximum = 9)]
    priority: u8,
    /// Invisible for this long after sending (at most 12 h).
    #[serde(default, deserialize_with = "super::int::one")]
    #[schema(minimum = 0, maximum = 43200000)]
    delay_ms: u64,
    /// Sending the same id again within the queue's dedup window enqueues nothing.
    #[schema(min_length = 1, max_length = 128)]
    dedup_id: Option<String>,
    /// FIFO group: one message of a group is in flight at a time, in send order.
    group: Option<String>,
    /// Dead-lettered if not delivered within this many ms.
    #[serde(default, deserialize_with = "super::int::opt")]
    #[schema(minimum = 0)]
    ttl_ms: Option<u64>,
}

impl InMessage {
    pub(super) fn into_message(self, at: &str) -> Result<NewQueueMessage, ApiError> {
        let body = bytes_of(self.body, self.body_base64, &format!("{at}.body"))?
            .ok_or_else(|| ApiError::bad_request(format!("{at} has no body: give `body` (JSON) or `body_base64`")))?;
        Ok(NewQueueMessage {
            body: body.to_vec(),
            headers: self.headers.into_iter().collect(),
            priority: self.priority,
            delay_ms: self.delay_ms,
            dedup_id: self.dedup_id,
            group: self.group,
            ttl_ms: self.ttl_ms,
        })
    }
}

/// A received queue message.
#[derive(Serialize, ToSchema)]
pub(super) struct OutDelivery {
    /// Ack, nack or extend with this.
    receipt: String,
    /// Payload, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// Payload as base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
    /// Metadata.
    headers: BTreeMap<String, String>,
    /// Times delivered, this one included.
    deliveries: u32,
    /// Priority.
    priority: u8,
    /// FIFO group.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// Send time, ms since the Unix epoch.
    enqueued_ms: u64,
}

impl From<Delivery> for OutDelivery {
    fn from(d: Delivery) -> OutDelivery {
        let (body, body_base64) = text_or_base64(&d.body);
        OutDelivery {
            receipt: d.receipt,
            body,
            body_base64,
            headers: d.headers.into_iter().collect(),
            deliveries: d.deliveries,
            priority: d.priority,
            group: d.group,
            enqueued_ms: d.enqueued_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(json: serde_json::Value) -> Result<NewRecord, ApiError> {
        serde_json::from_value::<InRecord>(json).unwrap().into_record("records[0]")
    }

    #[test]
    fn values_are_text_json_or_base64() {
        assert_eq!(rec(serde_json::json!({"value": "plain"})).unwrap().value, Bytes::from("plain"));
        assert_eq!(rec(serde_json::json!({"value": {"a": 1}})).unwrap().value, Bytes::from("{\"a\":1}"));
        assert_eq!(rec(serde_json::json!({"value_base64": "/w=="})).unwrap().value, Bytes::from(vec![0xff]));
        let both = rec(serde_json::json!({"value": "x", "value_base64": "eA=="})).unwrap_err();
        assert!(both.message.contains("records[0].value"), "{}", both.message);
        assert!(rec(serde_json::json!({"key": "k"})).unwrap_err().message.contains("has no value"));
        assert!(rec(serde_json::json!({"value_base64": "!!"})).unwrap_err().message.contains("not valid base64"));
    }

    #[test]
    fn binary_comes_back_as_base64() {
        let r = StoredRecord { offset: 1, timestamp_ms: 2, key: None, headers: vec![], value: Bytes::from(vec![0xff]) };
        let out = OutRecord::new(Some(0), r);
        assert_eq!((out.value, out.value_base64.as_deref()), (None, Some("/w==")));
    }
}

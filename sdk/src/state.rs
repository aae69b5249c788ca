//! Key/value state of this pipeline step, committed atomically with the batch's outputs.
//!
//! State is scoped to (pipeline, step, source partition): messages with the same key land in
//! the same partition, so per-key state never races between partition workers. Reads see the
//! current batch's own writes. Nothing is durable until the batch commits; if the batch fails,
//! its writes are discarded together with its outputs.

use serde::{Serialize, de::DeserializeOwned};

use crate::Error;
use crate::bindings::weir::plugin::state as wit;

/// The value stored under `key`, if any.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    wit::get(key)
}

/// Store `value` under `key` until it is deleted.
pub fn set(key: &[u8], value: &[u8]) -> Result<(), Error> {
    wit::set(key, value, None).map_err(limit_error)
}

/// Store `value` under `key` for `ttl_ms` milliseconds after this batch commits.
pub fn set_with_ttl(key: &[u8], value: &[u8], ttl_ms: u64) -> Result<(), Error> {
    wit::set(key, value, Some(ttl_ms)).map_err(limit_error)
}

/// Remove `key`.
pub fn delete(key: &[u8]) {
    wit::delete(key)
}

/// The value under `key` decoded from JSON.
pub fn get_json<T: DeserializeOwned>(key: &[u8]) -> Result<Option<T>, Error> {
    match get(key) {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| Error::fatal(format!("state value is not valid JSON: {e}"))),
    }
}

/// Store `value` under `key` encoded as JSON.
pub fn set_json<T: Serialize + ?Sized>(key: &[u8], value: &T) -> Result<(), Error> {
    set(key, &serde_json::to_vec(value)?)
}

fn limit_error(e: wit::StateError) -> Error {
    match e {
        // Retrying the same write cannot fit it under the limit.
        wit::StateError::LimitExceeded(why) => Error::fatal(format!("state limit exceeded: {why}")),
    }
}

//! How the registry keeps itself in the store's metadata: its keys, and its two records in
//! one layout of its own (versioned JSON in [`Raw`] values), the same in RocksDB and
//! JetStream — the registry defines it once for both stores.
//!
//! | key | value |
//! |---|---|
//! | `schema/seq` | next schema id |
//! | `schema/id/<id, 10 digits>` | [`SchemaRecord`] |
//! | `schema/fp/<blake3 of format, canonical text, references>` | the id, u32 |
//! | `schema/v/<subject, hex>/<version, 10 digits>` | [`VersionRecord`] |
//! | `schema/config`, `schema/config/<subject, hex>` | compatibility level, text |
//! | `schema/mode`, `schema/mode/<subject, hex>` | mode, text |

use serde::{Deserialize, Serialize};

use super::{Reference, SchemaError, SchemaText, SchemaType};
use crate::storage::StoreError;
use crate::store::Raw;

/// The registry's keys.
pub(super) struct Keys;

impl Keys {
    pub(super) const ID_SEQ: &'static str = "schema/seq";
    pub(super) const SCHEMAS: &'static str = "schema/id/";
    pub(super) const VERSIONS: &'static str = "schema/v/";

    pub(super) fn schema(id: u32) -> String {
        format!("{}{id:010}", Keys::SCHEMAS)
    }

    pub(super) fn fingerprint(fp: &str) -> String {
        format!("schema/fp/{fp}")
    }

    pub(super) fn subject_prefix(subject: &str) -> String {
        format!("{}{}/", Keys::VERSIONS, hex(subject))
    }

    pub(super) fn version(subject: &str, version: u32) -> String {
        format!("{}{version:010}", Keys::subject_prefix(subject))
    }

    pub(super) fn config(subject: Option<&str>) -> String {
        match subject {
            Some(s) => format!("schema/config/{}", hex(s)),
            None => "schema/config".to_string(),
        }
    }

    pub(super) fn mode(subject: Option<&str>) -> String {
        match subject {
            Some(s) => format!("schema/mode/{}", hex(s)),
            None => "schema/mode".to_string(),
        }
    }

    pub(super) fn parse_version(key: &str) -> Result<(String, u32), SchemaError> {
        let corrupt = || corrupt(key, "not a subject version key");
        let rest = key.strip_prefix(Keys::VERSIONS).ok_or_else(corrupt)?;
        let (subject, version) = rest.split_once('/').ok_or_else(corrupt)?;
        Ok((unhex(subject).ok_or_else(corrupt)?, version.parse().map_err(|_| corrupt())?))
    }

    pub(super) fn parse_schema(key: &str) -> Result<u32, SchemaError> {
        key.strip_prefix(Keys::SCHEMAS).and_then(|id| id.parse().ok()).ok_or_else(|| corrupt(key, "not a schema key"))
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    String::from_utf8(bytes?).ok()
}

fn corrupt(key: &str, why: &str) -> SchemaError {
    SchemaError::Store(StoreError::Corrupt { what: key.to_string(), why: why.to_string() })
}

/// A schema by id (never changed once written).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SchemaRecord {
    /// Layout version (1).
    pub v: u32,
    pub schema_type: SchemaType,
    pub schema: String,
    #[serde(default)]
    pub references: Vec<Reference>,
}

impl SchemaRecord {
    pub(super) fn new(text: &SchemaText) -> SchemaRecord {
        SchemaRecord {
            v: 1,
            schema_type: text.schema_type,
            schema: text.schema.clone(),
            references: text.references.clone(),
        }
    }

    pub(super) fn into_text(self) -> SchemaText {
        SchemaText { schema_type: self.schema_type, schema: self.schema, references: self.references }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a schema record serializes")
    }

    pub(super) fn decode(key: &str, raw: &Raw) -> Result<SchemaRecord, SchemaError> {
        serde_json::from_slice(&raw.0).map_err(|e| corrupt(key, &e.to_string()))
    }
}

/// A subject's version: which schema, and whether it was soft-deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VersionRecord {
    pub id: u32,
    #[serde(default)]
    pub deleted: bool,
}

impl VersionRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a version record serializes")
    }

    pub(super) fn decode(key: &str, raw: &Raw) -> Result<VersionRecord, SchemaError> {
        serde_json::from_slice(&raw.0).map_err(|e| corrupt(key, &e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_keys_come_back() {
        for s in ["orders-value", "a/b", "ü x.y"] {
            assert_eq!(Keys::parse_version(&Keys::version(s, 7)).unwrap(), (s.to_string(), 7));
        }
    }
}

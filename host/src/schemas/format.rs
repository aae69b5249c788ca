//! The three schema formats behind one type: parse (with the schemas a schema references),
//! the canonical text that decides "the same schema", compatibility between two schemas of a
//! format, and checking a payload against a schema.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{avro, json, proto};

/// A schema's format, as Confluent's API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    /// Apache Avro (the default when a request names none).
    Avro,
    /// JSON Schema.
    Json,
    /// Protocol Buffers (`.proto` source, or a base64 `FileDescriptorProto`).
    Protobuf,
}

impl SchemaType {
    /// The API's name.
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }

    /// From the API's name (case-insensitive).
    pub fn parse(s: &str) -> Option<SchemaType> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Some(SchemaType::Avro),
            "JSON" => Some(SchemaType::Json),
            "PROTOBUF" => Some(SchemaType::Protobuf),
            _ => None,
        }
    }
}

/// A schema referenced by another, already resolved: the name it is imported under (an Avro
/// full name, a JSON `$ref` URL, a `.proto` import path) and its text, with its own
/// references before it (depth first, each once).
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The name the referring schema uses.
    pub name: String,
    /// Its text.
    pub schema: String,
}

/// A parsed schema of any format.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Avro.
    Avro(Arc<avro::AvroSchema>),
    /// JSON Schema.
    Json(Arc<json::JsonSchema>),
    /// Protobuf.
    Protobuf(Arc<proto::ProtoSchema>),
}

impl Parsed {
    /// Parse `text` as `kind`, resolving its references among `refs`. The error says what is
    /// wrong with the schema (the registry answers it as 42201).
    pub fn parse(kind: SchemaType, text: &str, refs: &[Resolved]) -> Result<Parsed, String> {
        Ok(match kind {
            SchemaType::Avro => Parsed::Avro(Arc::new(avro::AvroSchema::parse(text, refs)?)),
            SchemaType::Json => Parsed::Json(Arc::new(json::JsonSchema::parse(text, refs)?)),
            SchemaType::Protobuf => Parsed::Protobuf(Arc::new(proto::ProtoSchema::parse(text, refs)?)),
        })
    }

    /// The format.
    pub fn kind(&self) -> SchemaType {
        match self {
            Parsed::Avro(_) => SchemaType::Avro,
            Parsed::Json(_) => SchemaType::Json,
            Parsed::Protobuf(_) => SchemaType::Protobuf,
        }
    }

    /// The canonical text: two registrations of schemas with the same canonical text (and
    /// references) are the same schema and get the same id.
    pub fn canonical(&self) -> String {
        match self {
            Parsed::Avro(s) => s.canonical(),
            Parsed::Json(s) => s.canonical(),
            Parsed::Protobuf(s) => s.canonical(),
        }
    }

    /// Why data written with `writer` cannot be read with `self` (the reader); empty when it
    /// can. Schemas of different formats never read each other.
    pub fn can_read(&self, writer: &Parsed) -> Vec<String> {
        match (self, writer) {
            (Parsed::Avro(r), Parsed::Avro(w)) => r.can_read(w),
            (Parsed::Json(r), Parsed::Json(w)) => r.can_read(w),
            (Parsed::Protobuf(r), Parsed::Protobuf(w)) => r.can_read(w),
            (r, w) => vec![format!("a {} schema cannot read {} data", r.kind().name(), w.kind().name())],
        }
    }

    /// The record's full name for the record naming strategies: an Avro record's (or enum's,
    /// fixed's) full name, a JSON schema's `title`, a Protobuf message's (at `message`).
    pub fn record_name(&self, message: &[i32]) -> Option<String> {
        match self {
            Parsed::Avro(s) => s.name(),
            Parsed::Json(s) => s.title(),
            Parsed::Protobuf(s) => s.message_name(message),
        }
    }

    /// Check a payload (without the Confluent framing: after the magic byte and the id, and
    /// for Protobuf after the message indexes, given as `message`) against the schema.
    pub fn validate(&self, payload: &[u8], message: &[i32]) -> Result<(), String> {
        match self {
            Parsed::Avro(s) => s.validate(payload),
            Parsed::Json(s) => s.validate(payload),
            Parsed::Protobuf(s) => s.validate(payload, message),
        }
    }
}

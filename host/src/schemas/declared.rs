//! What a plugin declares it reads and writes, carried in its component as the custom
//! section `weir:schemas`, so the host knows it at deploy without running the plugin.
//!
//! The section holds JSON lines, one per declaration: `{"reads": REF}` or `{"writes": REF}`,
//! where REF is a registered subject (`{"subject": "orders-value"}`, optionally with
//! `"version": N`) or a schema inline (`{"schemaType": "AVRO", "schema": "…"}`, with
//! `references` as the registry takes them). The Rust SDK's `schemas!` macro writes it into
//! the core module; `weir plugin build` (any language, from the project's manifest) and
//! `weir plugin schemas` append it to the component. Where several sections are found, the
//! lines of all are read in order and a later declaration of the same direction wins, so an
//! appended section overrides one compiled in.

use serde::{Deserialize, Serialize};

use super::{MAX_SCHEMA_BYTES, Reference, SchemaText, SchemaType};

/// The custom section's name.
pub const SECTION: &str = "weir:schemas";
/// Largest declaration accepted, bytes (two schemas at the registry's limit).
const MAX_SECTION_BYTES: usize = 2 * MAX_SCHEMA_BYTES + 4096;

/// A plugin's declared input and output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    /// What its input must be readable as.
    pub reads: Option<SchemaRef>,
    /// What its outputs are.
    pub writes: Option<SchemaRef>,
}

/// A schema as a plugin names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SchemaRef {
    /// A subject's version (latest when not given).
    Subject {
        /// The subject.
        subject: String,
        /// Its version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
    },
    /// A schema written out.
    Inline {
        /// `AVRO` (default), `JSON` or `PROTOBUF`.
        #[serde(rename = "schemaType", default = "avro")]
        schema_type: String,
        /// Its text.
        schema: String,
        /// Registered schemas it refers to.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        references: Vec<Reference>,
    },
}

fn avro() -> String {
    "AVRO".to_string()
}

impl SchemaRef {
    /// The inline schema as the registry takes it (`None` for a subject).
    pub fn inline(&self) -> Result<Option<SchemaText>, String> {
        let SchemaRef::Inline { schema_type, schema, references } = self else { return Ok(None) };
        let kind = SchemaType::parse(schema_type)
            .ok_or_else(|| format!("unknown schemaType `{schema_type}`: use AVRO, JSON or PROTOBUF"))?;
        Ok(Some(SchemaText { schema_type: kind, schema: schema.clone(), references: references.clone() }))
    }

    /// A short description for messages and listings.
    pub fn describe(&self) -> String {
        match self {
            SchemaRef::Subject { subject, version: Some(v) } => format!("subject `{subject}` version {v}"),
            SchemaRef::Subject { subject, version: None } => format!("subject `{subject}` (latest)"),
            SchemaRef::Inline { schema_type, schema, .. } => {
                format!("an inline {schema_type} schema ({} bytes, blake3 {})", schema.len(), short_hash(schema))
            }
        }
    }
}

fn short_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex()[..12].to_string()
}

/// One JSON line of the section.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reads: Option<SchemaRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    writes: Option<SchemaRef>,
}

impl Declared {
    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.reads.is_none() && self.writes.is_none()
    }

    /// Read the declarations in a component (`None`: it has none). An error says what is
    /// wrong with the section, so the deploy is refused with it.
    pub fn from_component(wasm: &[u8]) -> Result<Option<Declared>, String> {
        let mut found: Option<Declared> = None;
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            let Ok(wasmparser::Payload::CustomSection(section)) = payload else { continue };
            if section.name() != SECTION {
                continue;
            }
            if section.data().len() > MAX_SECTION_BYTES {
                return Err(format!(
                    "its `{SECTION}` section is {} bytes; the limit is {MAX_SECTION_BYTES}",
                    section.data().len()
                ));
            }
            let text = std::str::from_utf8(section.data())
                .map_err(|e| format!("its `{SECTION}` section is not UTF-8 ({e})"))?;
            found.get_or_insert_with(Declared::default).read_lines(text)?;
        }
        Ok(found.filter(|d| !d.is_empty()))
    }

    fn read_lines(&mut self, text: &str) -> Result<(), String> {
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let line: Line = serde_json::from_str(line).map_err(|e| {
                format!(
                    "line {} of its `{SECTION}` section is not a declaration ({e}); each line is \
                     {{\"reads\"|\"writes\": {{\"subject\": S}} or {{\"schemaType\": T, \"schema\": TEXT}}}}",
                    n + 1
                )
            })?;
            for r in [&line.reads, &line.writes].into_iter().flatten() {
                r.inline()?;
            }
            if line.reads.is_some() {
                self.reads = line.reads;
            }
            if line.writes.is_some() {
                self.writes = line.writes;
            }
        }
        Ok(())
    }

    /// The section's text for these declarations.
    pub fn to_lines(&self) -> String {
        let mut out = String::new();
        for line in
            [Line { reads: self.reads.clone(), writes: None }, Line { reads: None, writes: self.writes.clone() }]
        {
            if line.reads.is_some() || line.writes.is_some() {
                out.push_str(&serde_json::to_string(&line).expect("declarations serialize"));
                out.push('\n');
            }
        }
        out
    }

    /// `wasm` with these declarations appended as a top-level custom section (replacing a
    /// top-level one embedded before), which overrides any compiled into its modules.
    pub fn embed(&self, wasm: &[u8]) -> Vec<u8> {
        let payload = self.to_lines();
        let mut body = Vec::new();
        leb128(&mut body, SECTION.len() as u64);
        body.extend_from_slice(SECTION.as_bytes());
        body.extend_from_slice(payload.as_bytes());
        let mut out = without_top_level_section(wasm);
        out.push(0); // custom section id
        leb128(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        out
    }
}

/// `wasm` without its top-level `weir:schemas` sections (unchanged if it cannot be walked:
/// the host's parse will say what is wrong with it).
fn without_top_level_section(wasm: &[u8]) -> Vec<u8> {
    const HEADER: usize = 8;
    let mut out = wasm.get(..HEADER).unwrap_or(wasm).to_vec();
    let mut at = HEADER.min(wasm.len());
    while at < wasm.len() {
        let id = wasm[at];
        let Some((size, len_bytes)) = read_leb128(&wasm[at + 1..]) else { return wasm.to_vec() };
        let end = usize::try_from(size).ok().and_then(|s| (at + 1 + len_bytes).checked_add(s));
        let Some(end) = end.filter(|e| *e <= wasm.len()) else { return wasm.to_vec() };
        let body = &wasm[at + 1 + len_bytes..end];
        let ours = id == 0
            && read_leb128(body).is_some_and(|(n, k)| {
                usize::try_from(n).ok().and_then(|n| k.checked_add(n)).and_then(|e| body.get(k..e))
                    == Some(SECTION.as_bytes())
            });
        if !ours {
            out.extend_from_slice(&wasm[at..end]);
        }
        at = end;
    }
    out
}

fn read_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble of the component encoding.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn an_embedded_declaration_reads_back_and_a_later_one_wins() {
        let first = Declared {
            reads: Some(SchemaRef::Subject { subject: "orders-value".into(), version: None }),
            writes: Some(SchemaRef::Inline {
                schema_type: "AVRO".into(),
                schema: "\"string\"".into(),
                references: vec![],
            }),
        };
        let once = first.embed(EMPTY_COMPONENT);
        assert_eq!(Declared::from_component(&once).unwrap(), Some(first.clone()));
        let second =
            Declared { reads: None, writes: Some(SchemaRef::Subject { subject: "out".into(), version: Some(2) }) };
        let twice = second.embed(&once);
        let read = Declared::from_component(&twice).unwrap().unwrap();
        assert_eq!(read, second, "embedding again replaces what was embedded");
        assert_eq!(twice.len(), EMPTY_COMPONENT.len() + second.embed(b"").len(), "nothing piles up");
    }

    #[test]
    fn a_malformed_declaration_is_refused_with_its_line() {
        let mut wasm = EMPTY_COMPONENT.to_vec();
        let mut body = Vec::new();
        leb128(&mut body, SECTION.len() as u64);
        body.extend_from_slice(SECTION.as_bytes());
        body.extend_from_slice(
            b"{\"reads\": {\"subject\": \"a\"}}\n{\"writes\": {\"schemaType\": \"XML\", \"schema\": \"x\"}}\n",
        );
        wasm.push(0);
        leb128(&mut wasm, body.len() as u64);
        wasm.extend_from_slice(&body);
        let err = Declared::from_component(&wasm).unwrap_err();
        assert!(err.contains("XML"), "{err}");
        assert_eq!(Declared::from_component(EMPTY_COMPONENT).unwrap(), None);
    }
}

//! Avro schemas: parsed and resolved by `apache-avro`, whose schema-resolution checker (the
//! specification's rules: promotions, defaults, aliases, unions, enum defaults) decides
//! compatibility, with its "partially compatible" taken as incompatible. Where it still
//! differs from the specification, `cases/avro.toml` says so (`known_gap`).

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

use super::format::Resolved;

/// A parsed Avro schema and the named types it references.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    refs: Vec<Schema>,
    /// The text as JSON, for the canonical form.
    json: serde_json::Value,
}

impl AvroSchema {
    /// Parse `text`; `refs` are the schemas of the named types it uses (references).
    pub fn parse(text: &str, refs: &[Resolved]) -> Result<AvroSchema, String> {
        let (schema, refs) = if refs.is_empty() {
            (Schema::parse_str(text).map_err(|e| format!("invalid Avro schema: {e}"))?, Vec::new())
        } else {
            Schema::parse_str_with_list(text, refs.iter().map(|r| r.schema.as_str()))
                .map_err(|e| format!("invalid Avro schema (with its references): {e}"))?
        };
        let json = serde_json::from_str(text).map_err(|e| format!("invalid Avro schema: {e}"))?;
        Ok(AvroSchema { schema, refs, json })
    }

    /// The schema's JSON, compact with keys sorted: formatting does not make another schema,
    /// but every attribute does — as in Confluent's registry, where two schemas differing in a
    /// logical type or a doc get two ids (the specification's Parsing Canonical Form drops
    /// both, and apache-avro's is not stable under a second parse).
    pub fn canonical(&self) -> String {
        sorted(&self.json).to_string()
    }

    /// The full name of a named schema (record, enum, fixed).
    pub fn name(&self) -> Option<String> {
        self.schema.name().map(|n| n.fullname(None))
    }

    /// Why `writer`'s data cannot be read with this schema (empty: it can).
    pub fn can_read(&self, writer: &AvroSchema) -> Vec<String> {
        match SchemaCompatibility::can_read(&writer.schema, &self.schema) {
            Ok(Compatibility::Full) => Vec::new(),
            // The crate's `Partial` means "resolving may error": some values the writer can
            // write have no reading (a writer union branch that no reader branch reads, or an
            // enum symbol the reader lacks and has no default for). The specification signals
            // an error for those values, and Confluent (Java's SchemaCompatibility) calls such
            // a pair incompatible; a registry promises that all the writer's data reads.
            Ok(Compatibility::Partial) => vec![
                "some of the writer's data cannot be read: a branch of the writer's union that no branch of the \
                 reader's reads, or an enum symbol the reader lacks and has no default for"
                    .to_string(),
            ],
            // The crate's text starts with a shout that adds nothing to the reason.
            Err(e) => vec![e.to_string().trim_start_matches("Incompatible schemata! ").to_string()],
        }
    }

    /// Walk `payload` as one datum of this schema; the whole payload must be used. Our own
    /// walker rather than apache-avro's decoder: that one recurses without a limit (a
    /// self-referencing record and a few bytes overflow the stack and abort the process) and
    /// builds a value per field, where a check needs neither.
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        let names = self.names();
        let mut walk = Walk { names: &names, rest: payload, budget: MAX_STEPS };
        walk.datum(&self.schema, 0).map_err(|e| format!("not a datum of the Avro schema: {e}"))?;
        if !walk.rest.is_empty() {
            return Err(format!("{} bytes follow the Avro datum", walk.rest.len()));
        }
        Ok(())
    }

    /// Every named type (records, enums, fixed) by full name, for resolving references.
    fn names(&self) -> HashMap<String, &Schema> {
        let mut names = HashMap::new();
        let mut stack: Vec<&Schema> = std::iter::once(&self.schema).chain(&self.refs).collect();
        while let Some(s) = stack.pop() {
            match s {
                Schema::Record(r) if names.insert(r.name.fullname(None), s).is_none() => {
                    stack.extend(r.fields.iter().map(|f| &f.schema));
                }
                Schema::Enum(e) => drop(names.insert(e.name.fullname(None), s)),
                Schema::Fixed(f) => drop(names.insert(f.name.fullname(None), s)),
                Schema::Array(a) => stack.push(&a.items),
                Schema::Map(m) => stack.push(&m.types),
                Schema::Union(u) => stack.extend(u.variants()),
                _ => {}
            }
        }
        names
    }
}

/// Deepest nesting a checked datum may have (records in records, union branches, items).
const MAX_DEPTH: usize = 128;
/// Most values a checked datum may hold: an array of nulls takes no bytes per item, so its
/// length alone must not decide the work.
const MAX_STEPS: usize = 4 << 20;

/// `v` with every object's keys sorted.
fn sorted(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            serde_json::Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// One datum's walk through the binary encoding.
struct Walk<'a> {
    names: &'a HashMap<String, &'a Schema>,
    rest: &'a [u8],
    budget: usize,
}

impl<'a> Walk<'a> {
    fn datum(&mut self, schema: &Schema, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.budget = self.budget.checked_sub(1).ok_or("more values than a checked record may hold")?;
        use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => match self.take(1)?[0] {
                0 | 1 => Ok(()),
                b => Err(format!("boolean byte {b}")),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let v = self.long()?;
                i32::try_from(v).map(drop).map_err(|_| format!("{v} does not fit an int"))
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.take(4).map(drop),
            Schema::Double => self.take(8).map(drop),
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => self.bytes().map(drop),
            Schema::String | Schema::Uuid(UuidSchema::String) => {
                std::str::from_utf8(self.bytes()?).map(drop).map_err(|e| format!("a string that is not UTF-8: {e}"))
            }
            Schema::Decimal(d) => match &d.inner {
                InnerDecimalSchema::Bytes => self.bytes().map(drop),
                InnerDecimalSchema::Fixed(f) => self.take(f.size).map(drop),
            },
            Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => self.take(f.size).map(drop),
            Schema::Enum(e) => {
                let i = self.long()?;
                match usize::try_from(i).ok().filter(|i| *i < e.symbols.len()) {
                    Some(_) => Ok(()),
                    None => Err(format!("enum index {i} of {} symbols", e.symbols.len())),
                }
            }
            Schema::Union(u) => {
                let i = self.long()?;
                let branch = usize::try_from(i).ok().and_then(|i| u.variants().get(i));
                let branch = branch.ok_or_else(|| format!("union branch {i} of {}", u.variants().len()))?;
                self.datum(branch, depth + 1)
            }
            Schema::Record(r) => r.fields.iter().try_for_each(|f| self.datum(&f.schema, depth + 1)),
            Schema::Array(a) => self.blocks(|w| w.datum(&a.items, depth + 1)),
            Schema::Map(m) => self.blocks(|w| {
                w.bytes()?;
                w.datum(&m.types, depth + 1)
            }),
            Schema::Ref { name } => {
                let found = self.names.get(&name.fullname(None)).copied();
                let found = found.ok_or_else(|| format!("unknown named type {}", name.fullname(None)))?;
                self.datum(found, depth + 1)
            }
        }
    }

    /// Array and map blocks: a count (negative: followed by the block's size), items, until
    /// a count of 0.
    fn blocks(&mut self, mut item: impl FnMut(&mut Walk<'a>) -> Result<(), String>) -> Result<(), String> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            for _ in 0..count.unsigned_abs() {
                item(self)?;
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("the payload ends {} bytes short", n - self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// A zigzag varint of at most 10 bytes.
    fn long(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| format!("negative length {len}"))?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> AvroSchema {
        match AvroSchema::parse(text, &[]) {
            Ok(s) => s,
            Err(e) => panic!("{e}: {text}"),
        }
    }

    #[test]
    fn case_table() {
        super::super::cases::run(super::super::SchemaType::Avro, include_str!("cases/avro.toml"), 45);
    }

    #[test]
    fn validate_takes_whole_datums_only() {
        let r = schema(
            r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"},{"name":"s","type":"string"}]}"#,
        );
        // n = -3 (zigzag 5), s = "hello" (length 5, zigzag 10).
        let datum = [&[0x05, 0x0A][..], b"hello"].concat();
        assert_eq!(r.validate(&datum), Ok(()));
        // Cut inside the string: apache-avro reads the short string as null, the check refuses it.
        for cut in 1..datum.len() {
            assert!(r.validate(&datum[..cut]).is_err(), "{} of {} bytes accepted", cut, datum.len());
        }
        let mut longer = datum.clone();
        longer.push(0);
        assert_eq!(r.validate(&longer), Err("1 bytes follow the Avro datum".to_string()));
        assert!(schema(r#""string""#).validate(&[0x0A, b'a']).is_err(), "5 bytes promised, 1 sent");
        assert_eq!(schema(r#""string""#).validate(&[0]), Ok(()), "the empty string");
        assert_eq!(schema(r#""null""#).validate(&[]), Ok(()), "null is no bytes");
    }

    #[test]
    fn partial_compatibility_is_incompatible() {
        let reasons = schema(r#""string""#).can_read(&schema(r#"["null","string"]"#));
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("cannot be read"), "{reasons:?}");
    }

    #[test]
    fn a_self_referencing_schema_is_refused_by_depth_not_by_the_stack() {
        // Registers fine; apache-avro's decoder recursed until the process aborted.
        let endless = schema(r#"{"type":"record","name":"N","fields":[{"name":"n","type":"N"}]}"#);
        let e = endless.validate(&[]).unwrap_err();
        assert!(e.contains("ends") || e.contains("deeper"), "{e}");
        let list = schema(r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#);
        // 2 = union branch 1 (Node), 0 = branch 0 (null): a list of three nodes.
        assert_eq!(list.validate(&[2, 2, 0]), Ok(()));
        let deep = vec![2u8; 100_000];
        let e = list.validate(&deep).unwrap_err();
        assert!(e.contains("deeper than"), "{e}");
        let nulls = schema(r#"{"type":"array","items":"null"}"#);
        // A block of 2^62 nulls takes no bytes; the step budget stops it.
        let e = nulls.validate(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0]).unwrap_err();
        assert!(e.contains("more values"), "{e}");
    }

    #[test]
    fn a_logical_type_makes_another_schema() {
        let millis = schema(r#"{"type":"long","logicalType":"timestamp-millis"}"#);
        let micros = schema(r#"{"type":"long","logicalType":"timestamp-micros"}"#);
        assert_ne!(millis.canonical(), micros.canonical());
        let spaced = schema("{ \"logicalType\" : \"timestamp-millis\", \"type\":\"long\" }");
        assert_eq!(millis.canonical(), spaced.canonical(), "formatting and key order do not count");
    }
}

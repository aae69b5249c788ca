//! Avro schemas: parsed and resolved by `apache-avro`, whose schema-resolution checker (the
//! specification's rules: promotions, defaults, aliases, unions, enum defaults) decides
//! compatibility.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

use super::format::Resolved;

/// A parsed Avro schema and the named types it references.
#[derive(Debug)]
pub struct AvroSchema {
    schema: Schema,
    refs: Vec<Schema>,
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
        Ok(AvroSchema { schema, refs })
    }

    /// The Parsing Canonical Form (the specification's: names full, attributes that do not
    /// change the encoding dropped).
    pub fn canonical(&self) -> String {
        self.schema.canonical_form()
    }

    /// The full name of a named schema (record, enum, fixed).
    pub fn name(&self) -> Option<String> {
        self.schema.name().map(|n| n.fullname(None))
    }

    /// Why `writer`'s data cannot be read with this schema (empty: it can).
    pub fn can_read(&self, writer: &AvroSchema) -> Vec<String> {
        match SchemaCompatibility::can_read(&writer.schema, &self.schema) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("{e}")],
        }
    }

    /// Decode `payload` as one datum of this schema; the whole payload must be used.
    #[allow(deprecated)] // the builder that replaces these in 0.22 cannot take optional schemata in one chain
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        let mut reader = payload;
        let known: Vec<&Schema> = self.refs.iter().collect();
        let decoded = if known.is_empty() {
            apache_avro::from_avro_datum(&self.schema, &mut reader, None)
        } else {
            apache_avro::from_avro_datum_schemata(&self.schema, known, &mut reader, None)
        };
        decoded.map_err(|e| format!("not a datum of the Avro schema: {e}"))?;
        if !reader.is_empty() {
            return Err(format!("{} bytes follow the Avro datum", reader.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Table {
        case: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        reader: String,
        writer: String,
        compatible: bool,
        why: String,
        /// The specification's answer, which the checker does not give yet (`why` says what it
        /// does instead): reported, not asserted, so the table records the gap.
        #[serde(default)]
        known_gap: bool,
    }

    fn schema(text: &str) -> AvroSchema {
        match AvroSchema::parse(text, &[]) {
            Ok(s) => s,
            Err(e) => panic!("{e}: {text}"),
        }
    }

    #[test]
    fn case_table() {
        let table: Table = match toml::from_str(include_str!("cases/avro.toml")) {
            Ok(t) => t,
            Err(e) => panic!("cases/avro.toml: {e}"),
        };
        assert!(table.case.len() >= 45, "{} cases", table.case.len());
        let mut failures = Vec::new();
        let mut names = HashSet::new();
        for case in &table.case {
            assert!(names.insert(case.name.clone()), "duplicate case {}", case.name);
            let reasons = schema(&case.reader).can_read(&schema(&case.writer));
            let agrees = reasons.is_empty() == case.compatible;
            if case.known_gap {
                // Printed so `--nocapture` shows the gaps; a gap that closes is worth knowing too.
                let state = if agrees { "now agrees with the spec" } else { "still differs" };
                println!("known gap {} ({state}): {}: {reasons:?}", case.name, case.why);
            } else if !agrees {
                failures.push(format!(
                    "{} (expected compatible={}, {}): {reasons:?}",
                    case.name, case.compatible, case.why
                ));
            }
        }
        assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
    }
}

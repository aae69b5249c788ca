//! The compatibility tables (`cases/*.toml`) run as data: each case a reader, a writer,
//! whether the reader reads the writer's data, and why. One runner for the three formats.

use std::collections::HashSet;

use serde::Deserialize;

use super::format::{Parsed, SchemaType};

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

fn parse(kind: SchemaType, text: &str) -> Parsed {
    match Parsed::parse(kind, text, &[]) {
        Ok(s) => s,
        Err(e) => panic!("{e}: {text}"),
    }
}

/// Run `table` (TOML) for `kind`: at least `min` cases, names unique, every case that is not
/// a known gap agreeing.
pub(super) fn run(kind: SchemaType, table: &str, min: usize) {
    let table: Table = match toml::from_str(table) {
        Ok(t) => t,
        Err(e) => panic!("the {} case table: {e}", kind.name()),
    };
    assert!(table.case.len() >= min, "{} cases", table.case.len());
    let (mut failures, mut names) = (Vec::new(), HashSet::new());
    for case in &table.case {
        assert!(names.insert(case.name.clone()), "duplicate case {}", case.name);
        let reasons = parse(kind, &case.reader).can_read(&parse(kind, &case.writer));
        let agrees = reasons.is_empty() == case.compatible;
        if case.known_gap {
            // Printed so `--nocapture` shows the gaps; a gap that closes is worth knowing too.
            let state = if agrees { "now agrees with the spec" } else { "still differs" };
            println!("known gap {} ({state}): {}: {reasons:?}", case.name, case.why);
        } else if !agrees {
            failures
                .push(format!("{} (expected compatible={}, {}): {reasons:?}", case.name, case.compatible, case.why));
        }
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

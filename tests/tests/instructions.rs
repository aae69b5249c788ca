//! Instructions per message, counted by callgrind, held to `tests/instructions-baseline.json`:
//! a count more than 5% above its baseline fails. Counts for one binary and input repeat to
//! the instruction, so this test fails on a regression and only on one (BENCHMARKS.md,
//! "Instruction counts", says how to read and update the baseline).

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use weir_tests::{plugin, weir_release_bin, workspace_root};

/// How far above its baseline a count may go.
const TOLERANCE: f64 = 0.05;

#[test]
fn instructions_per_message_stay_within_5_percent_of_the_baseline() -> Result<()> {
    let path = workspace_root().join("tests/instructions-baseline.json");
    let baseline = counts(&std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)?;
    let dir = plugin("pass").parent().context("plugin dir")?.to_path_buf();
    let out = std::process::Command::new(weir_release_bin())
        .args(["bench", "--instructions", "--json", "--plugin-dir"])
        .arg(&dir)
        .output()?;
    ensure!(out.status.success(), "weir bench --instructions failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let now = counts(&String::from_utf8(out.stdout)?)?;
    let update = "weir bench --instructions --json > tests/instructions-baseline.json (release build)";
    ensure!(
        now.keys().eq(baseline.keys()),
        "the bench counts {:?} but the baseline has {:?}: update it with `{update}`",
        now.keys().collect::<Vec<_>>(),
        baseline.keys().collect::<Vec<_>>()
    );
    let mut risen = Vec::new();
    for (case, &n) in &now {
        let base = baseline[case];
        eprintln!(
            "{case:<16} {n:>10.1} instructions per message (baseline {base:.1}, {:+.1}%)",
            (n / base - 1.0) * 100.0
        );
        if n > base * (1.0 + TOLERANCE) {
            risen.push(format!("{case}: {n:.1} against {base:.1} ({:+.1}%)", (n / base - 1.0) * 100.0));
        } else if n < base * (1.0 - TOLERANCE) {
            eprintln!("  {case} is more than 5% below its baseline: lower the baseline in this commit (`{update}`)");
        }
    }
    ensure!(risen.is_empty(), "instructions per message rose more than 5% above the baseline: {}", risen.join("; "));
    Ok(())
}

/// The `instructions_per_message` map of the bench's JSON.
fn counts(json: &str) -> Result<BTreeMap<String, f64>> {
    let v: serde_json::Value = serde_json::from_str(json)?;
    let map = v["instructions_per_message"].as_object().context("no instructions_per_message object")?;
    map.iter().map(|(k, v)| Ok((k.clone(), v.as_f64().with_context(|| format!("{k} is not a number"))?))).collect()
}

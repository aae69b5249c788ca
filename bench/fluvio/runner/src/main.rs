//! `fluvio-peer --filter F.wasm --map M.wasm [--count N]`: times Fluvio's SmartEngine running a
//! JSON filter, a JSON map, and both in one chain, over 1,000-record batches of 100-byte JSON
//! records encoded beforehand, with no storage and no network, and prints one JSON line.

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use fluvio_smartengine::{
    DEFAULT_SMARTENGINE_VERSION, SmartEngine, SmartModuleChainBuilder, SmartModuleChainInstance, SmartModuleConfig,
};
use fluvio_smartmodule::Record;
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleInput;

/// The engine this measures; keep it in step with the `=` pin in Cargo.toml.
const ENGINE_VERSION: &str = "0.50.1";
/// Records per batch, as weir's bench batches them.
const BATCH: usize = 1000;
/// Bytes per record value.
const SIZE: usize = 100;

/// A JSON message of exactly `size` bytes, as weir's bench makes them (cli/src/bench/stages.rs).
fn message(i: u64, size: usize) -> Vec<u8> {
    let region = ["eu", "us", "apac"][(i % 3) as usize];
    let mut v = format!(r#"{{"id":{i},"status":"paid","region":"{region}","pad":""#).into_bytes();
    while v.len() + 2 < size {
        v.push(b'x');
    }
    v.extend_from_slice(b"\"}");
    v
}

struct Args {
    filter: String,
    map: String,
    count: u64,
}

fn args() -> Result<Args> {
    const USAGE: &str = "usage: fluvio-peer --filter FILTER.wasm --map MAP.wasm [--count N]";
    let (mut filter, mut map, mut count) = (None, None, 1_000_000_u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--filter" => filter = Some(value()?),
            "--map" => map = Some(value()?),
            "--count" => count = value()?.parse::<u64>().context("--count takes a number")?,
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    ensure!(count > 0, "--count must be positive");
    Ok(Args { filter: filter.context(USAGE)?, map: map.context(USAGE)?, count })
}

/// One SmartModule of a chain: its name, its wasm, its params.
type Module<'a> = (&'a str, &'a [u8], &'a [(&'a str, &'a str)]);

/// A chain of `modules` in order, compiled and `init`ed now, before any timing.
fn chain(engine: &SmartEngine, modules: &[Module<'_>]) -> Result<SmartModuleChainInstance> {
    let mut builder = SmartModuleChainBuilder::default();
    for (name, wasm, params) in modules {
        let mut config = SmartModuleConfig::builder();
        config.smartmodule_names(vec![name.to_string()]);
        for (key, value) in *params {
            config.param(*key, *value);
        }
        // build() fails only when smartmodule_names is unset.
        builder.add_smart_module(config.build().expect("smartmodule_names is set"), wasm.to_vec());
    }
    // Each call leaks its output buffer in the guest (fluvio-smartmodule-derive's transform
    // `mem::forget`s it and the engine never frees it), so a module's memory grows by about
    // its output every pass. The engine's default cap, 1 GB per memory, would stop the two
    // passes at about 4,000,000 records; the cap is lifted to wasm32's own 4 GiB, which lasts
    // to about 15,000,000. Only the cap changes: the growth, as any long-lived chain's, stays.
    builder.set_store_memory_limit(4 << 30);
    builder.initialize(engine)
}

/// Each batch's records encoded once, as Fluvio's SPU holds a stored batch's record bytes.
fn encode_batches(count: u64) -> Result<Vec<Vec<u8>>> {
    (0..count)
        .step_by(BATCH)
        .map(|start| -> Result<Vec<u8>> {
            let records = (start..count.min(start + BATCH as u64))
                .map(|i| {
                    let mut record = Record::new(message(i, SIZE));
                    record.preamble.set_offset_delta((i - start) as i64);
                    record
                })
                .collect();
            Ok(SmartModuleInput::try_from_records(records, DEFAULT_SMARTENGINE_VERSION)?.into_raw_bytes())
        })
        .collect()
}

/// Runs every batch through `chain` once and returns the records out. `process` takes its
/// input by value, so an input cannot be built once and reused: each call wraps a copy of the
/// batch's bytes, as the SPU does for every batch it runs a chain on
/// (fluvio-spu src/smartengine/batch.rs: `SmartModuleInput::new(input_batch.records().clone(), ..)`).
fn pass(chain: &mut SmartModuleChainInstance, batches: &[Vec<u8>]) -> Result<u64> {
    let mut out = 0;
    for (b, raw) in batches.iter().enumerate() {
        let output = chain.process(SmartModuleInput::new(raw.clone(), (b * BATCH) as i64, 0))?;
        if let Some(e) = output.error {
            bail!("smartmodule failed: {e}");
        }
        // Counted and dropped; `process` calls into wasm, which the optimiser cannot elide.
        out += output.successes.len() as u64;
    }
    Ok(out)
}

/// Records in per second over all batches, after one untimed warm-up pass; both passes must
/// put out `expected` records.
fn measure(chain: &mut SmartModuleChainInstance, batches: &[Vec<u8>], count: u64, expected: u64) -> Result<f64> {
    let warm = pass(chain, batches)?;
    ensure!(warm == expected, "warm-up put out {warm} records, expected {expected}");
    let start = Instant::now();
    let out = pass(chain, batches)?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(out == expected, "put out {out} records, expected {expected}");
    Ok(count as f64 / secs)
}

/// The record values `chain` puts out for `values`, one batch, for the correctness checks.
fn probe(chain: &mut SmartModuleChainInstance, values: &[Vec<u8>]) -> Result<Vec<String>> {
    let records = values.iter().map(|v| Record::new(v.clone())).collect();
    let output = chain.process(SmartModuleInput::try_from_records(records, DEFAULT_SMARTENGINE_VERSION)?)?;
    if let Some(e) = output.error {
        bail!("smartmodule failed: {e}");
    }
    Ok(output.successes.iter().map(|r| String::from_utf8_lossy(r.value.as_ref()).into_owned()).collect())
}

/// Whether the map made one record with `stage` set, `pad` gone and the rest kept.
fn mapped(out: &[String]) -> bool {
    out.len() == 1
        && out[0].contains(r#""stage":"billed""#)
        && out[0].contains(r#""status":"paid""#)
        && !out[0].contains(r#""pad""#)
}

fn main() -> Result<()> {
    let args = args()?;
    let filter_wasm = std::fs::read(&args.filter).with_context(|| format!("reading {}", args.filter))?;
    let map_wasm = std::fs::read(&args.map).with_context(|| format!("reading {}", args.map))?;
    // The config weir's bench gives json-filter and json-transform.
    let filter: Module = ("bench-filter", filter_wasm.as_slice(), &[("field", "status"), ("equals", "paid")]);
    let map: Module = ("bench-map", map_wasm.as_slice(), &[("set.stage", "billed"), ("drop", "pad")]);

    let batches = encode_batches(args.count)?;
    let engine = SmartEngine::new();

    // Correctness, once per chain: every bench record is paid, so the filter must also be seen
    // to drop one that is not; the map must set `stage` and remove `pad`.
    let paid = message(0, SIZE);
    let unpaid = String::from_utf8(message(1, SIZE))?.replace(r#""status":"paid""#, r#""status":"open""#).into_bytes();

    // Each chain is dropped before the next is built, which frees the memory its calls leaked
    // (see `chain`).
    let filter_rps = {
        let mut c = chain(&engine, &[filter])?;
        let out = probe(&mut c, &[paid.clone(), unpaid.clone()])?;
        ensure!(out.len() == 1 && out[0].as_bytes() == paid.as_slice(), "filter put out {out:?}");
        measure(&mut c, &batches, args.count, args.count)?
    };
    let map_rps = {
        let mut c = chain(&engine, &[map])?;
        let out = probe(&mut c, std::slice::from_ref(&paid))?;
        ensure!(mapped(&out), "map put out {out:?}");
        measure(&mut c, &batches, args.count, args.count)?
    };
    let filter_map_rps = {
        let mut c = chain(&engine, &[filter, map])?;
        let out = probe(&mut c, &[paid.clone(), unpaid.clone()])?;
        ensure!(mapped(&out), "filter→map put out {out:?}");
        measure(&mut c, &batches, args.count, args.count)?
    };

    println!(
        r#"{{"fluvio_smartengine":"{ENGINE_VERSION}","filter_records_per_s":{filter_rps:.0},"map_records_per_s":{map_rps:.0},"filter_map_records_per_s":{filter_map_rps:.0},"count":{},"batch":{BATCH}}}"#,
        args.count
    );
    Ok(())
}

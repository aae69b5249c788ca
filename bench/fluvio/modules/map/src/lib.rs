//! Fluvio SmartModule twin of weir's json-transform with `set.stage=billed`, `drop=pad`: parses
//! a JSON object, removes the `drop` fields (comma-separated), sets each `set.<field>` and
//! writes it back with serde_json. Params default to `set.stage=billed` and `drop=pad`; fields
//! are top-level only (weir's paths may be dotted, which this bench does not use).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::core::{Decoder, Encoder};
use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{RecordData, Result, SmartModuleRecord, eyre, smartmodule};
use serde_json::Value;

/// The fields to remove, then the fields to set, read once from the chain's params.
struct Config {
    drops: Vec<String>,
    sets: Vec<(String, Value)>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

// The generated export calls `super::init`, so the function must be named `init`.
#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    // SmartModuleExtraParams has `get(key)` but no way to list its keys, and `set.<field>`
    // names them. At version 0 its encoding is just its map (the lookback field starts at
    // version 20), so a round trip through the wire format lists them. Runs once, untimed.
    let mut wire = Vec::<u8>::new();
    params.encode(&mut wire, 0)?;
    let all = BTreeMap::<String, String>::decode_from(&mut wire.as_slice(), 0)?;
    let mut sets: Vec<(String, Value)> =
        all.iter().filter_map(|(k, v)| Some((k.strip_prefix("set.")?.to_string(), json_or_string(v)))).collect();
    if sets.is_empty() {
        sets.push(("stage".to_string(), Value::from("billed")));
    }
    let drops = all.get("drop").map_or("pad", String::as_str);
    let drops = drops.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    CONFIG.set(Config { drops, sets }).map_err(|_| eyre!("init ran twice"))
}

/// As weir's `set.`: the value is JSON if it parses (`42`, `true`), else a string.
fn json_or_string(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::from(v))
}

#[smartmodule(map)]
pub fn map(record: &SmartModuleRecord) -> Result<(Option<RecordData>, RecordData)> {
    let config = CONFIG.get().ok_or_else(|| eyre!("init did not run"))?;
    let mut doc: Value = serde_json::from_slice(record.value.as_ref())?;
    let object = doc.as_object_mut().ok_or_else(|| eyre!("payload is JSON but not an object"))?;
    // weir's order: drops before sets.
    for field in &config.drops {
        object.remove(field);
    }
    for (field, value) in &config.sets {
        object.insert(field.clone(), value.clone());
    }
    // The key is kept, as weir keeps it.
    Ok((record.key().cloned(), serde_json::to_vec(&doc)?.into()))
}

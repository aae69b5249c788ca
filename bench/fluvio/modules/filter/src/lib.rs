//! Fluvio SmartModule twin of weir's json-filter with `field=status`, `equals=paid`: keeps a
//! JSON record whose top-level `field` equals `equals` (params; default `status` and `paid`).

use std::sync::OnceLock;

use fluvio_smartmodule::dataplane::smartmodule::SmartModuleExtraParams;
use fluvio_smartmodule::{Result, SmartModuleRecord, eyre, smartmodule};
use serde_json::Value;

/// `(field, equals)`, read once from the chain's params, as weir's plugin reads its config.
static CONFIG: OnceLock<(String, String)> = OnceLock::new();

// The generated export calls `super::init`, so the function must be named `init`.
#[smartmodule(init)]
fn init(params: SmartModuleExtraParams) -> Result<()> {
    let get = |key: &str, default: &str| params.get(key).map_or(default, String::as_str).to_string();
    CONFIG.set((get("field", "status"), get("equals", "paid"))).map_err(|_| eyre!("init ran twice"))
}

#[smartmodule(filter)]
pub fn filter(record: &SmartModuleRecord) -> Result<bool> {
    let (field, equals) = CONFIG.get().ok_or_else(|| eyre!("init did not run"))?;
    // The whole document is parsed, as a SmartModule author using serde_json would write it;
    // a payload that is not JSON is an error, as weir's default `on-invalid=fail`.
    let doc: Value = serde_json::from_slice(record.value.as_ref())?;
    Ok(match doc.get(field) {
        Some(Value::String(s)) => s == equals,
        // weir compares numbers and booleans by their JSON text.
        Some(other) => other.to_string() == *equals,
        None => false,
    })
}

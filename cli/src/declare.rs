//! A plugin's schema declarations (`weir:schemas`, read by the host at deploy): set and
//! shown by `weir plugin schemas`, and embedded by `weir plugin build` from the project's
//! manifest — `[package.metadata.weir.schemas]` (Cargo.toml), `[tool.weir.schemas]`
//! (pyproject.toml) or `"weir": {"schemas": …}` (package.json) — the same for every language.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use weir_host::schemas::{Declared, SchemaRef};

/// How a declaration is written on the command line and in manifests.
pub const REF_SYNTAX: &str = "`subject:NAME[@VERSION]`, `avro:FILE`, `json:FILE` or `protobuf:FILE`";

/// `weir plugin schemas FILE [--reads REF] [--writes REF] [-o OUT]`.
pub fn run(file: &Path, reads: Option<String>, writes: Option<String>, out: Option<PathBuf>) -> anyhow::Result<()> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    if reads.is_none() && writes.is_none() {
        let declared = Declared::from_component(&wasm)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            .unwrap_or_default();
        print!("{}", describe(&declared));
        return Ok(());
    }
    let here = Path::new(".");
    let declared = Declared {
        reads: reads.map(|r| parse_ref(&r, here)).transpose()?,
        writes: writes.map(|w| parse_ref(&w, here)).transpose()?,
    };
    let out = out.unwrap_or_else(|| file.to_path_buf());
    std::fs::write(&out, declared.embed(&wasm)).with_context(|| format!("writing {}", out.display()))?;
    println!("{}", out.display());
    eprint!(
        "{}",
        describe(&Declared::from_component(&std::fs::read(&out)?).map_err(anyhow::Error::msg)?.unwrap_or_default())
    );
    Ok(())
}

/// One line per direction, for people.
pub fn describe(d: &Declared) -> String {
    let side = |r: &Option<SchemaRef>| r.as_ref().map_or_else(|| "nothing declared".to_string(), SchemaRef::describe);
    format!("reads:  {}\nwrites: {}\n", side(&d.reads), side(&d.writes))
}

/// A declaration from its written form; files are read relative to `base`.
pub fn parse_ref(text: &str, base: &Path) -> anyhow::Result<SchemaRef> {
    let Some((kind, rest)) = text.split_once(':') else {
        bail!("`{text}` is not a schema reference: write {REF_SYNTAX}");
    };
    let schema_type = match kind {
        "subject" => {
            let (subject, version) = match rest.rsplit_once('@') {
                Some((s, v)) => {
                    (s, Some(v.parse::<u32>().with_context(|| format!("`{v}` in `{text}` is not a version"))?))
                }
                None => (rest, None),
            };
            if subject.is_empty() {
                bail!("`{text}` names no subject");
            }
            return Ok(SchemaRef::Subject { subject: subject.to_string(), version });
        }
        "avro" => "AVRO",
        "json" => "JSON",
        "protobuf" => "PROTOBUF",
        other => bail!("`{other}` in `{text}` is not a kind of schema reference: write {REF_SYNTAX}"),
    };
    let path = base.join(rest);
    let schema = std::fs::read_to_string(&path).with_context(|| format!("reading the schema {}", path.display()))?;
    Ok(SchemaRef::Inline { schema_type: schema_type.to_string(), schema, references: Vec::new() })
}

/// The declarations in a project's manifest, if any.
pub fn from_manifest(dir: &Path) -> anyhow::Result<Option<Declared>> {
    let (reads, writes) = if dir.join("Cargo.toml").exists() {
        toml_pair(&dir.join("Cargo.toml"), &["package", "metadata", "weir", "schemas"])?
    } else if dir.join("pyproject.toml").exists() {
        toml_pair(&dir.join("pyproject.toml"), &["tool", "weir", "schemas"])?
    } else if dir.join("package.json").exists() {
        json_pair(&dir.join("package.json"))?
    } else {
        return Ok(None);
    };
    let declared = Declared {
        reads: reads.map(|r| parse_ref(&r, dir)).transpose()?,
        writes: writes.map(|w| parse_ref(&w, dir)).transpose()?,
    };
    Ok((!declared.is_empty()).then_some(declared))
}

/// Embed the project's declarations (if it has any) into the component at `wasm`.
pub fn embed_from_manifest(dir: &Path, wasm: &Path) -> anyhow::Result<()> {
    let Some(declared) = from_manifest(dir)? else { return Ok(()) };
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    std::fs::write(wasm, declared.embed(&bytes)).with_context(|| format!("writing {}", wasm.display()))?;
    eprint!("declared schemas (from the manifest):\n{}", describe(&declared));
    Ok(())
}

type Pair = (Option<String>, Option<String>);

fn toml_pair(path: &Path, at: &[&str]) -> anyhow::Result<Pair> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut node = Some(&toml::Value::Table(table));
    for key in at {
        node = node.and_then(|n| n.get(key));
    }
    let get = |k: &str| -> anyhow::Result<Option<String>> {
        match node.and_then(|n| n.get(k)) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => bail!("`{}.{k}` in {} must be a string: {REF_SYNTAX}", at.join("."), path.display()),
        }
    };
    Ok((get("reads")?, get("writes")?))
}

fn json_pair(path: &Path) -> anyhow::Result<Pair> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let node = doc.get("weir").and_then(|w| w.get("schemas"));
    let get = |k: &str| -> anyhow::Result<Option<String>> {
        match node.and_then(|n| n.get(k)) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => bail!("`weir.schemas.{k}` in {} must be a string: {REF_SYNTAX}", path.display()),
        }
    };
    Ok((get("reads")?, get("writes")?))
}

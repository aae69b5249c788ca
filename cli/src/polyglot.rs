//! Plugins in Python and JavaScript: `weir plugin new --lang python|js` scaffolds a project,
//! `weir plugin build` drives componentize-py or esbuild + componentize-js (installed, pinned,
//! by `examples/setup.sh` into weir's tool directory) against the WIT built into this binary.
//! The result is an ordinary `weir:plugin@0.2.0` component: the host cannot tell the language.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::author::Kind;

/// The ABI every plugin is built against, carried in the binary so a build needs no checkout.
const WIT: &str = include_str!("../../wit/weir.wit");

/// The world a Python or JavaScript plugin implements.
const WORLD: &str = "weir:plugin/plugin@0.2.0";

/// What a plugin project is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Rust crate on weir-sdk.
    Rust,
    /// A Python module on weir-sdk (`import weir`), built by componentize-py.
    Python,
    /// A JavaScript or TypeScript module on @weir/sdk, built by esbuild and componentize-js.
    Js,
}

/// The language of the project in `dir`, told by its manifest.
pub fn detect(dir: &Path) -> anyhow::Result<Lang> {
    for (manifest, lang) in [("Cargo.toml", Lang::Rust), ("pyproject.toml", Lang::Python), ("package.json", Lang::Js)] {
        if dir.join(manifest).exists() {
            return Ok(lang);
        }
    }
    bail!(
        "{} holds no plugin project: expected Cargo.toml (Rust), pyproject.toml (Python) or package.json \
         (JavaScript); `weir plugin new NAME --lang …` creates one",
        dir.display()
    )
}

/// A tool from weir's tool directory, or an error saying how to install it.
fn tool(relative: &str, what: &str) -> anyhow::Result<PathBuf> {
    let path = weir_host::build::tools_dir().join(relative);
    if !path.exists() {
        bail!("{what} is not installed at {}; run examples/setup.sh (it installs the pinned version)", path.display());
    }
    Ok(path)
}

/// `weir plugin unit`: the project's unit tests, by its manifest, with the runner weir
/// installed for it and this weir's SDK (`sdk`, weir's `sdk/` directory) found by it — on
/// `PYTHONPATH`, or linked as `node_modules/@weir/sdk` — so a project holds no path to the
/// SDK and works wherever it is moved or cloned. The command is printed first.
pub fn unit(dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    let mut cmd = if dir.join("pyproject.toml").exists() {
        let mut c = Command::new(tool("plugin-py/bin/python", "weir's Python (with pytest)")?);
        c.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
        let python_sdk = sdk_dir(sdk, "python")?;
        let path = match std::env::var_os("PYTHONPATH") {
            Some(old) if !old.is_empty() => std::env::join_paths(
                std::iter::once(python_sdk.into_os_string()).chain(std::env::split_paths(&old).map(Into::into)),
            )?,
            _ => python_sdk.into_os_string(),
        };
        c.env("PYTHONPATH", path);
        c
    } else if dir.join("package.json").exists() {
        link_js_sdk(dir, &sdk_dir(sdk, "js")?)?;
        let mut c = Command::new("node");
        c.arg("--test");
        c
    } else if dir.join("Cargo.toml").exists() {
        let mut c = Command::new("cargo");
        c.arg("test");
        if super::author::wants_sdk_patch(dir) {
            super::author::link_rust_sdk(dir, sdk)?;
            c.args(["--config", &super::author::rust_sdk_patch(sdk)]);
        }
        c
    } else {
        bail!("{} holds no plugin project (pyproject.toml, package.json or Cargo.toml)", dir.display());
    };
    cmd.current_dir(dir);
    let shown: Vec<String> =
        std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|a| a.to_string_lossy().into_owned()).collect();
    eprintln!("running: {} (in {})", shown.join(" "), dir.display());
    let status = cmd.status().with_context(|| format!("running {}", shown.join(" ")))?;
    if !status.success() {
        bail!("the unit tests failed ({status})");
    }
    Ok(())
}

/// Scaffold a Python or JavaScript plugin of `kind` in `dir`, with a unit test, on the SDK
/// under `sdk` (weir's `sdk/` directory).
pub fn new(name: &str, lang: Lang, kind: Kind, dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    for manifest in ["Cargo.toml", "pyproject.toml", "package.json"] {
        if dir.join(manifest).exists() {
            bail!("{} already holds a project ({manifest}); choose another --dir", dir.display());
        }
    }
    let (plugin, test) = templates(lang, kind);
    match lang {
        Lang::Python => {
            sdk_dir(sdk, "python")?;
            write(dir, "pyproject.toml", &pyproject(name, kind))?;
            write(dir, "plugin.py", plugin)?;
            write(dir, "test_plugin.py", test)?;
        }
        Lang::Js => {
            let sdk = sdk_dir(sdk, "js")?;
            write(dir, "package.json", &package_json(name, kind))?;
            write(dir, "src/plugin.js", plugin)?;
            write(dir, "test/plugin.test.js", test)?;
            link_js_sdk(dir, &sdk)?;
        }
        Lang::Rust => unreachable!("Rust crates are scaffolded by author::new"),
    }
    if kind == Kind::Map {
        write(dir, "invoice.schema.json", INVOICE_SCHEMA)?;
    }
    write(dir, ".gitignore", "/build\n/node_modules\n__pycache__/\n")?;
    let (unit, file) = match lang {
        Lang::Python => ("pytest", "plugin.py"),
        _ => ("node --test", "src/plugin.js"),
    };
    println!("created {} {kind:?} plugin `{name}` in {} ({file})", lang_name(lang), dir.display());
    println!(
        "next: `{unit}` in {0}, `weir plugin build {0}`, `weir plugin test <wasm> --input FILE.jsonl`, \
         `weir plugin deploy {name} --watch {0}`",
        dir.display()
    );
    Ok(())
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::Js => "JavaScript",
    }
}

/// The starting source and its unit test for `kind` in `lang`: `templates/<kind>.rs` (its
/// tests inside, so the second is empty), `templates/python/<kind>.py` with
/// `test_<kind>.py`, or `templates/js/<kind>.js` with `<kind>.test.js`. Each has a test that
/// configures a text setting with digits only (config values are text).
pub fn templates(lang: Lang, kind: Kind) -> (&'static str, &'static str) {
    macro_rules! pick {
        ($k:literal) => {
            match lang {
                Lang::Rust => (include_str!(concat!("templates/", $k, ".rs")), ""),
                Lang::Python => (
                    include_str!(concat!("templates/python/", $k, ".py")),
                    include_str!(concat!("templates/python/test_", $k, ".py")),
                ),
                Lang::Js => (
                    include_str!(concat!("templates/js/", $k, ".js")),
                    include_str!(concat!("templates/js/", $k, ".test.js")),
                ),
            }
        };
    }
    match kind {
        Kind::Filter => pick!("filter"),
        Kind::Map => pick!("map"),
        Kind::FilterMap => pick!("filter_map"),
        Kind::FlatMap => pick!("flat_map"),
        Kind::Route => pick!("route"),
        Kind::Handler => pick!("handler"),
        Kind::Aggregate => pick!("aggregate"),
        Kind::Plugin => pick!("plugin"),
    }
}

/// `sdk/<lang>` under weir's `sdk/` directory, absolute.
fn sdk_dir(sdk: &Path, lang: &str) -> anyhow::Result<PathBuf> {
    let dir = sdk.join(lang);
    std::fs::canonicalize(&dir)
        .with_context(|| format!("no {lang} SDK at {}; pass --sdk-path PATH/TO/weir/sdk", dir.display()))
}

fn write(dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// The JSON Schema of the map scaffold's invoices, which every language's map declares it writes.
pub const INVOICE_SCHEMA: &str = include_str!("templates/invoice.schema.json");

fn pyproject(name: &str, kind: Kind) -> String {
    let schemas = if kind == Kind::Map {
        "\n# What the plugin writes, embedded by `weir plugin build`: `weir pipeline create` (and every\n\
         # later deploy) is refused if it does not fit the sink topic's schema subject.\n\
         [tool.weir.schemas]\nwrites = \"json:invoice.schema.json\"\n"
    } else {
        ""
    };
    format!(
        r#"[project]
name = "{name}"
version = "0.1.0"
description = "A weir plugin in Python"
requires-python = ">=3.11"
# The weir SDK (import `weir`) is not a dependency to install: `weir plugin unit` and
# `weir plugin build` provide the one of the weir that runs them.
dependencies = []

# `weir plugin build` turns this module into a weir:plugin@0.2.0 component (componentize-py).
[tool.weir]
module = "plugin"
{schemas}
# `weir plugin unit` runs the unit tests without a server, with this weir's SDK on
# PYTHONPATH: the project holds no path of a machine and works wherever it is cloned.
[tool.pytest.ini_options]
pythonpath = ["."]
"#
    )
}

fn package_json(name: &str, kind: Kind) -> String {
    let mut weir = serde_json::json!({"entry": "src/plugin.js"});
    if kind == Kind::Map {
        // What the plugin writes, embedded by `weir plugin build` and checked by the server.
        weir["schemas"] = serde_json::json!({"writes": "json:invoice.schema.json"});
    }
    let doc = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "description": "A weir plugin in JavaScript",
        "type": "module",
        "private": true,
        "weir": weir,
        // `@weir/sdk` is not installed from a registry: `weir plugin unit` links this weir's
        // into node_modules and `weir plugin build` bundles it, wherever the project is.
        "scripts": {"test": "weir plugin unit ."},
    });
    serde_json::to_string_pretty(&doc).expect("json") + "\n"
}

/// `node_modules/@weir/sdk` → the SDK, as `npm install` of a local package would make it, so
/// `node --test` resolves `@weir/sdk` without a registry.
fn link_js_sdk(dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    let link = dir.join("node_modules/@weir/sdk");
    // Kept only while it points at this weir's SDK: a project moved, cloned or built by
    // another weir gets it linked again.
    if std::fs::read_link(&link).is_ok_and(|to| to == sdk) {
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("node_modules/@weir"))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(sdk, &link).with_context(|| format!("linking {} to {}", link.display(), sdk.display()))
}

/// Build the Python or JavaScript project in `dir` into `out` (default `dir/build`); returns
/// the component's path.
pub fn build(dir: &Path, lang: Lang, out: Option<PathBuf>, sdk: &Path) -> anyhow::Result<PathBuf> {
    let out = out.unwrap_or_else(|| dir.join("build"));
    // The build writes several files here: a symlink could point them anywhere.
    if std::fs::symlink_metadata(&out).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("{} is a symbolic link; weir plugin build writes only into a real directory", out.display());
    }
    write(&out, "wit/weir.wit", WIT)?;
    let started = Instant::now();
    let sdk = sdk_dir(sdk, if lang == Lang::Python { "python" } else { "js" })?;
    let fingerprint = fingerprint(lang, dir, &out, &sdk)?;
    if let Some(wasm) = unchanged_build(&out, &fingerprint) {
        eprintln!(
            "unchanged since the last build (same sources, SDK, weir and tools): {} (delete {} to build anew)",
            wasm.display(),
            out.display()
        );
        return Ok(wasm);
    }
    let wasm = match lang {
        Lang::Python => build_python(dir, &out, &sdk)?,
        Lang::Js => build_js(dir, &out, &sdk)?,
        Lang::Rust => unreachable!("Rust crates are built by author::build"),
    };
    super::declare::embed_from_manifest(dir, &wasm)?;
    let stamp = format!("{fingerprint}\n{}\n{}\n", wasm.display(), blake3::hash(&std::fs::read(&wasm)?).to_hex());
    std::fs::write(out.join(STAMP), stamp).with_context(|| format!("writing {}", out.join(STAMP).display()))?;
    let size = std::fs::metadata(&wasm)?.len();
    eprintln!(
        "built {} ({:.1} MB, {} plugin) in {:.1} s",
        wasm.display(),
        size as f64 / 1e6,
        lang_name(lang),
        started.elapsed().as_secs_f64()
    );
    Ok(wasm)
}

/// Where a build records what it was made from: the fingerprint, the component, its hash.
const STAMP: &str = "weir-build.stamp";

/// A fingerprint of everything a Python or JavaScript build reads: the project's sources, the
/// SDK's, the WIT, this weir and the pinned tools. componentize-py and componentize-js snapshot
/// an initialised interpreter whose heap differs from run to run (componentize-py#247,
/// ComponentizeJS#321), so the same inputs cannot give the same bytes twice; instead a build
/// with the fingerprint of the last one reuses its component, and `deploy --watch` restarted
/// on unchanged code deploys nothing new.
fn fingerprint(lang: Lang, dir: &Path, out: &Path, sdk: &Path) -> anyhow::Result<String> {
    let mut h = blake3::Hasher::new();
    for part in [lang_name(lang), env!("CARGO_PKG_VERSION"), WIT, &dir.display().to_string(), &tool_pins(lang)?] {
        h.update(part.as_bytes());
        h.update(b"\0");
    }
    hash_tree(&mut h, dir, dir, out)?;
    hash_tree(&mut h, sdk, sdk, out)?;
    Ok(h.finalize().to_hex().to_string())
}

/// The pinned tools as installed: the Python venv's packages, or the npm lock file.
fn tool_pins(lang: Lang) -> anyhow::Result<String> {
    if lang == Lang::Js {
        let lock = tool("plugin-js/package-lock.json", "the JavaScript tools' lock file")?;
        return std::fs::read_to_string(&lock).with_context(|| format!("reading {}", lock.display()));
    }
    let lib = tool("plugin-py/lib", "weir's Python")?;
    let mut pins = Vec::new();
    for python in std::fs::read_dir(&lib)?.filter_map(Result::ok) {
        pins.push(python.file_name().to_string_lossy().into_owned());
        if let Ok(packages) = std::fs::read_dir(python.path().join("site-packages")) {
            pins.extend(packages.filter_map(Result::ok).map(|p| p.file_name().to_string_lossy().into_owned()));
        }
    }
    pins.sort();
    Ok(pins.join("\n"))
}

/// Feed the files under `path` (names relative to `root`, and contents, in name order) into
/// `h`, leaving out build output, installed packages and the build's own output directory.
fn hash_tree(h: &mut blake3::Hasher, root: &Path, path: &Path, out: &Path) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let (p, kind) = (entry.path(), entry.file_type()?);
        let name = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
        if kind.is_dir() {
            if p != out && !super::author::NOT_SOURCES.contains(&entry.file_name().to_string_lossy().as_ref()) {
                hash_tree(h, root, &p, out)?;
            }
        } else if kind.is_symlink() {
            h.update(format!("link {name} {}\0", std::fs::read_link(&p)?.display()).as_bytes());
        } else {
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            h.update(format!("file {name} {}\0", bytes.len()).as_bytes());
            h.update(&bytes);
        }
    }
    Ok(())
}

/// The component of the last build in `out`, if it was built from `fingerprint` and is
/// still the file that build wrote.
fn unchanged_build(out: &Path, fingerprint: &str) -> Option<PathBuf> {
    let stamp = std::fs::read_to_string(out.join(STAMP)).ok()?;
    let mut lines = stamp.lines();
    let (made_from, wasm, hash) = (lines.next()?, PathBuf::from(lines.next()?), lines.next()?);
    let bytes = std::fs::read(&wasm).ok()?;
    (made_from == fingerprint && blake3::hash(&bytes).to_hex().as_str() == hash).then_some(wasm)
}

/// componentize-py over a generated entry module that imports the user's module (whose
/// decorator registers the plugin) and the SDK's binding of the world.
fn build_python(dir: &Path, out: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let manifest = read_toml(&dir.join("pyproject.toml"))?;
    let name = manifest.get("project").and_then(|p| p.get("name")).and_then(|n| n.as_str());
    let name = component_name(name, dir);
    let module = manifest
        .get("tool")
        .and_then(|t| t.get("weir"))
        .and_then(|w| w.get("module"))
        .and_then(|m| m.as_str())
        .unwrap_or("plugin");
    // It is written into the generated entry: a Python identifier, nothing else.
    let identifier = |part: &str| {
        part.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if !module.split('.').all(identifier) {
        bail!("[tool.weir] module = {module:?} is not a Python module name (letters, digits, _ and dots)");
    }
    let module_path = module.replace('.', "/");
    if !dir.join(format!("{module_path}.py")).exists() && !dir.join(&module_path).join("__init__.py").exists() {
        bail!(
            "{} names module `{module}` ([tool.weir] module) but there is no {module_path}.py in {}",
            dir.join("pyproject.toml").display(),
            dir.display()
        );
    }
    let entry = format!(
        "\"\"\"Generated by `weir plugin build`: the component's entry point.\"\"\"\n\
         import {module}  # noqa: F401  (its decorator registers the plugin)\n\
         from weir._component import WitWorld  # noqa: F401\n"
    );
    write(out, "weir_entry.py", &entry)?;
    let wasm = out.join(format!("{name}.wasm"));
    let mut cmd = Command::new(tool("plugin-py/bin/componentize-py", "componentize-py")?);
    cmd.arg("-d").arg(out.join("wit")).args(["-w", WORLD, "componentize"]);
    for path in [out, dir, sdk] {
        cmd.arg("-p").arg(path);
    }
    cmd.arg("weir_entry").arg("-o").arg(&wasm);
    run(cmd, "componentize-py")?;
    Ok(wasm)
}

/// esbuild bundles the generated entry, the user's module and the SDK into one ES module
/// (componentize-js takes one file), then componentize-js makes it a component.
fn build_js(dir: &Path, out: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json"))
            .with_context(|| format!("reading {}/package.json", dir.display()))?,
    )
    .with_context(|| format!("{}/package.json is not JSON", dir.display()))?;
    let name = component_name(manifest["name"].as_str().map(|n| n.rsplit('/').next().unwrap_or(n)), dir);
    let entry = manifest["weir"]["entry"].as_str().unwrap_or("src/plugin.js");
    let source = std::fs::canonicalize(dir.join(entry)).with_context(|| {
        format!("{}/package.json names entry `{entry}` (weir.entry), which does not exist", dir.display())
    })?;
    let generated = format!(
        "// Generated by `weir plugin build`: the component's entry point.\n\
         import * as log from 'weir:plugin/log@0.2.0';\n\
         import * as state from 'weir:plugin/state@0.2.0';\n\
         import {{ component }} from '@weir/sdk';\n\
         import plugin from {source:?};\n\
         const c = component(plugin, {{ log, state }});\n\
         export function init(config) {{ return c.init(config); }}\n\
         export function process(batch) {{ return c.process(batch); }}\n",
        source = source.display().to_string()
    );
    write(out, "entry.js", &generated)?;
    let bin = "plugin-js/node_modules/.bin";
    let mut bundle = Command::new(tool(&format!("{bin}/esbuild"), "esbuild")?);
    bundle
        .arg(out.join("entry.js"))
        .args(["--bundle", "--format=esm", "--platform=neutral", "--external:weir:*", "--log-level=warning"])
        .arg(format!("--alias:@weir/sdk={}", sdk.join("src/index.js").display()))
        .arg(format!("--outfile={}", out.join("bundle.js").display()));
    run(bundle, "esbuild")?;
    link_js_sdk(dir, sdk)?;
    let wasm = out.join(format!("{name}.wasm"));
    let mut componentize = Command::new(tool(&format!("{bin}/jco"), "jco (componentize-js)")?);
    componentize
        .arg("componentize")
        .arg(out.join("bundle.js"))
        .arg("--wit")
        .arg(out.join("wit"))
        // Only stdio of the WASI features: what a trapping plugin printed is quoted in its
        // dead letter; the host grants no clocks, randomness or HTTP anyway.
        .args(["-n", "plugin", "-d", "clocks", "http", "random", "fetch-event", "-o"])
        .arg(&wasm);
    run(componentize, "componentize-js")?;
    Ok(wasm)
}

/// A file name for the component from the project's name (or its directory's).
fn component_name(name: Option<&str>, dir: &Path) -> String {
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| dir.file_name().map_or_else(|| "plugin".into(), |n| n.to_string_lossy().into_owned()));
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn read_toml(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse().with_context(|| format!("{} is not valid TOML", path.display()))
}

/// Run a build tool, its output passed to stderr (stdout's last line is the component's
/// path, and `weir bench --json` prints JSON there); a failure names the tool and its exit.
fn run(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.stdout(std::io::stderr()).status().with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); its messages are above");
    }
    Ok(())
}

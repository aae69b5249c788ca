//! Building plugin crates into components: `cargo build --target wasm32-wasip2`, reporting
//! the `.wasm` it produced. Used by `weir plugin build`, `weir bench` and the test harness.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target plugins are compiled for.
pub const TARGET: &str = "wasm32-wasip2";

/// The cargo profile plugins are built with (see the workspace `Cargo.toml`).
pub const PROFILE: &str = "wasm";

/// Why a build failed; each says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The wasm target is not installed.
    #[error("the {TARGET} Rust target is not installed; add it with `rustup target add {TARGET}`")]
    MissingTarget,
    /// cargo could not be started.
    #[error("cannot run cargo: {0}")]
    Cargo(std::io::Error),
    /// The crate did not compile; cargo's output follows.
    #[error("building {dir} failed:\n{output}")]
    Failed {
        /// Crate directory.
        dir: String,
        /// cargo's stderr.
        output: String,
    },
    /// The build succeeded but produced no component.
    #[error("building {0} produced no .wasm: is its crate-type `cdylib`?")]
    NoComponent(String),
}

/// Where `examples/setup.sh` installs the tools weir drives (`$WEIR_TOOLS`, default
/// `~/.cache/weir-tools`): the Python and JavaScript plugin tool chains, and the clients and
/// browser the tests use.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WEIR_TOOLS").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/weir-tools"),
        PathBuf::from,
    )
}

/// Build the packages `packages` of the workspace at `root` (or the crate at `root` when empty)
/// for wasm32-wasip2 into `target_dir`, and return the components produced.
pub fn build_components(root: &Path, packages: &[String], target_dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    build_components_with(root, packages, target_dir, &[])
}

/// [`build_components`] with cargo `--config` settings (`KEY=VALUE`), e.g. the patch that
/// hands a plugin crate the SDK of the weir building it.
pub fn build_components_with(
    root: &Path,
    packages: &[String],
    target_dir: &Path,
    cargo_config: &[String],
) -> Result<Vec<PathBuf>, BuildError> {
    check_target()?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .args(["build", "--message-format=json-render-diagnostics", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    for c in cargo_config {
        cmd.args(["--config", c]);
    }
    // Crates outside this workspace have no `wasm` profile: they build in release.
    if root.join("Cargo.toml").exists() && has_wasm_profile(root) {
        cmd.args(["--profile", PROFILE]);
    } else {
        cmd.arg("--release");
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    let out = cmd.output().map_err(BuildError::Cargo)?;
    if !out.status.success() {
        return Err(BuildError::Failed {
            dir: root.display().to_string(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let wasm = artifacts(&String::from_utf8_lossy(&out.stdout));
    if wasm.is_empty() {
        return Err(BuildError::NoComponent(root.display().to_string()));
    }
    Ok(wasm)
}

/// `.wasm` files named in cargo's JSON messages.
fn artifacts(json_lines: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in json_lines.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        for f in msg["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str()) {
            if f.ends_with(".wasm") {
                out.push(PathBuf::from(f));
            }
        }
    }
    out
}

fn has_wasm_profile(root: &Path) -> bool {
    std::fs::read_to_string(root.join("Cargo.toml")).is_ok_and(|t| t.contains("[profile.wasm]"))
}

/// Fail early, with the fix, when the target is missing (rustup installs would otherwise
/// fail deep inside the build with "can't find crate for `core`").
fn check_target() -> Result<(), BuildError> {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return Ok(());
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if sysroot.is_empty() || Path::new(&sysroot).join("lib/rustlib").join(TARGET).exists() {
        Ok(())
    } else {
        Err(BuildError::MissingTarget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_wasm_artifacts_in_cargo_json() {
        let lines = r#"{"reason":"compiler-artifact","filenames":["/t/a.rlib"]}
{"reason":"compiler-artifact","filenames":["/t/wasm32-wasip2/wasm/weir_plugin_x.wasm","/t/x.rlib"]}
not json
{"reason":"build-finished","success":true}"#;
        assert_eq!(artifacts(lines), vec![PathBuf::from("/t/wasm32-wasip2/wasm/weir_plugin_x.wasm")]);
    }
}

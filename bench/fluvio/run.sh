#!/usr/bin/env bash
# Builds the two SmartModules for wasm32-wasip1 (what `smdk build` targets, with its default
# profile release-lto) and the fluvio-peer runner, then runs it with the built .wasm files:
#   bench/fluvio/run.sh [--count N]
# stdout carries only the runner's JSON line; build output goes to stderr. The target dir is
# kept apart from the repository's own (wasmtime 34 here, another there), even when the bench
# runs under a CARGO_TARGET_DIR; WEIR_FLUVIO_TARGET_DIR overrides it.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${WEIR_FLUVIO_TARGET_DIR:-$HOME/.cache/weir-fluvio-target}"
target=wasm32-wasip1
{
    # The repository's rust-toolchain.toml selects the toolchain; add the target to it if missing.
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    cargo build --profile release-lto --target "$target" -p fluvio-bench-filter -p fluvio-bench-map
    cargo build --release -p fluvio-peer
} >&2
wasm="$CARGO_TARGET_DIR/$target/release-lto"
exec "$CARGO_TARGET_DIR/release/fluvio-peer" \
    --filter "$wasm/fluvio_bench_filter.wasm" --map "$wasm/fluvio_bench_map.wasm" "$@"

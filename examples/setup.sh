#!/usr/bin/env bash
# Prepare a fresh Debian machine with the Rust toolchain for weir: the C toolchain pieces
# RocksDB's build needs (libclang), the benchmark peers (redis-server, nats-server), and the
# wasm32-wasip2 Rust target that plugins compile to. Safe to run again: it skips what is there.
set -euo pipefail

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi
echo "setup: ready" >&2

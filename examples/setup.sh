#!/usr/bin/env bash
# Prepare a fresh Debian machine with the Rust toolchain for weir: the C toolchain pieces
# RocksDB's build needs (libclang), the benchmark peers (redis-server, nats-server), the
# wasm32-wasip2 Rust target that plugins compile to, the Kafka clients the tests drive
# (Debian's kcat; confluent-kafka and kafka-python, pinned, in a virtualenv of weir's own),
# and what the observability tests use: promtool (Debian's prometheus) to check /metrics,
# and Debian's chromium driven by Playwright (pinned, in a second virtualenv; it uses the
# system chromium, so nothing is downloaded from a browser CDN).
# Safe to run again: it skips what is there.
set -euo pipefail

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
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
# Kafka clients for the tests and `weir bench --kafka`, beside the machine's Python.
tools="${WEIR_TOOLS:-$HOME/.cache/weir-tools}"
venv="$tools/kafka-venv"
want="confluent-kafka==2.16.1 kafka-python==3.0.12"
if [ "$(cat "$venv/.weir-pins" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing $want into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check $want
  echo "$want" > "$venv/.weir-pins"
fi
# Playwright for the console's browser tests, beside the machine's Python.
browser="$tools/browser-venv"
want_browser="playwright==1.65.2"
if [ "$(cat "$browser/.weir-pins" 2>/dev/null)" != "$want_browser" ]; then
  echo "setup: installing $want_browser into $browser" >&2
  python3 -m venv "$browser"
  "$browser/bin/pip" install -q --disable-pip-version-check $want_browser
  echo "$want_browser" > "$browser/.weir-pins"
fi
echo "setup: ready" >&2

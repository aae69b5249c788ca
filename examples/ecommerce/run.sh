#!/usr/bin/env bash
# The e-commerce order flow of the background document (section 8) on weir, its services in
# three languages: payment and inventory in Rust, notification in Python, shipping in
# JavaScript. It builds the services as wasm components, starts a server, deploys them as pipelines, sends a few hundred
# orders (with re-sent duplicates and declined cards), prints one order's trace through every
# service, checks the end state, then evolves the PaymentProcessed schema once compatibly
# (deployed live) and once breaking (refused at deploy), and exits 0 if it all holds.
set -euo pipefail
cd "$(dirname "$0")/../.."

ORDERS=${ORDERS:-300}
# The dev profile is the one `cargo test` uses: one build of the dependencies serves both.
profile=${WEIR_PROFILE:-dev}
cargo build --profile "$profile" -p weir-cli --bin weir
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin_dir=$profile; [ "$profile" = dev ] && bin_dir=debug
weir="$target/$bin_dir/weir"
cargo build --profile wasm --target wasm32-wasip2 --target-dir "$target/plugins" \
  -p weir-ecommerce-payment -p weir-ecommerce-inventory
rust="$target/plugins/wasm32-wasip2/wasm"
# The Python and JavaScript services: `weir plugin build` drives componentize-py and
# componentize-js (installed by examples/setup.sh); its last line is the component's path.
notification=$("$weir" plugin build examples/ecommerce/services/notification --target-dir "$target/ecommerce/notification" | tail -1)
shipping=$("$weir" plugin build examples/ecommerce/services/shipping --target-dir "$target/ecommerce/shipping" | tail -1)

data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$data"' EXIT
"$weir" serve --data-dir "$data/weir" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$data/addr" 2>"$data/server.log" &
server=$!
for _ in $(seq 100); do grep -q "http listening" "$data/addr" 2>/dev/null && break; sleep 0.1; done
export WEIR_SERVER=$(sed -n 's/^weir listening on //p' "$data/addr")
export WEIR_REGISTRY=http://$(sed -n 's/^weir http listening on //p' "$data/addr")
echo "== weir serve on $WEIR_SERVER (schema registry at $WEIR_REGISTRY)"

# Each event is a registered Avro subject: the contract of its topic (`--validation none`: the
# payloads stay JSON, so records are not checked at produce; pipelines are checked against the
# subjects before they run). The Rust and JavaScript services declare what they read and write.
schemas=examples/ecommerce/schemas
for pair in orders:order_created payments:payment_processed inventory:inventory_updated shipments:shipment_created; do
  "$weir" schema register "${pair%%:*}-value" --file "$schemas/${pair#*:}.avsc"
  "$weir" topic create "${pair%%:*}" --partitions 1 --value-schema topic --validation none >/dev/null
done
"$weir" topic create notifications --partitions 1 >/dev/null
"$weir" plugin deploy payment "$rust/weir_ecommerce_payment.wasm"
"$weir" plugin deploy inventory "$rust/weir_ecommerce_inventory.wasm"
"$weir" plugin deploy notification "$notification"
"$weir" plugin deploy shipping "$shipping"
for p in payments inventory shipping notify-orders notify-shipments; do
  "$weir" pipeline apply "examples/ecommerce/pipelines/$p.toml"
done

# Orders: every 10th is sent twice (a client retry); orders 7, 77 and 177 use a declined card.
python3 - "$ORDERS" >"$data/orders.jsonl" <<'PY'
import json, sys
n = int(sys.argv[1])
for i in range(1, n + 1):
    card = "4000-0000-0000-0002" if i in (7, 77, 177) else "4242-4242-4242-4242"
    order = {"order_id": f"o-{i}", "customer": f"c{i % 23}", "sku": f"sku-{i % 3 + 1}", "qty": 1 + i % 2,
             "amount_cents": 1000 + 37 * i, "card": card}
    print(json.dumps(order))
    if i % 10 == 0:
        print(json.dumps(order))
PY
sent=$(wc -l <"$data/orders.jsonl")
declined=$(grep -c 4000-0000-0000-0002 "$data/orders.jsonl" || true)
"$weir" produce orders --file "$data/orders.jsonl" --key-field order_id --header weir-type=OrderCreated
echo "== sent $sent OrderCreated events ($ORDERS orders, $((sent - ORDERS)) duplicates, $declined declined cards)"

# Wait until every pipeline has caught up (declined cards take their retries first).
for _ in $(seq 600); do
  lag=$("$weir" pipeline list --json | python3 -c 'import json,sys; print(sum(hw - c for p in json.load(sys.stdin) for _, c, hw in p["partitions"]))')
  [ "$lag" -eq 0 ] && break; sleep 0.1
done
"$weir" pipeline list

echo
echo "== trace of order o-42 through every service"
for t in orders payments inventory shipments notifications; do
  "$weir" consume "$t" --json | python3 -c '
import json, sys
topic = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m["key"] == "o-42":
        kind, value = m["headers"].get("weir-type", "?"), m["value"]
        print(f"  {topic:<14} {kind:<17} {value}")
' "$t"
done

echo
echo "== checks"
count() { "$weir" consume "$1" | wc -l; }
check() { if [ "$2" -eq "$3" ]; then echo "  ok   $1: $2"; else echo "  FAIL $1: $2, expected $3"; failed=1; fi; }
failed=0
check "PaymentProcessed (duplicates charged once, declined cards not charged)" "$(count payments)" $((ORDERS - declined))
check "dead-lettered payments" "$(count payments.dlq)" "$declined"
check "InventoryUpdated" "$(count inventory)" $((ORDERS - declined))
check "ShipmentCreated" "$(count shipments)" $((ORDERS - declined))
check "notifications (one per order, one per shipment)" "$(count notifications)" $((ORDERS + ORDERS - declined))
reason=$("$weir" consume payments.dlq --json --max 1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["headers"]["weir-dlq-error"])')
echo "  dead-letter reason: $reason"
sold=$(python3 -c "import json
orders = {o['order_id']: o for o in map(json.loads, open('$data/orders.jsonl'))}
print(sum(o['qty'] for o in orders.values() if o['sku'] == 'sku-3' and o['card'].startswith('4242')))")
stock=$("$weir" state get inventory 1 stock:sku-3 | awk 'NR==2 {print $3}')
check "sku-3 stock left (500 minus units sold, each order counted once)" "$stock" $((500 - sold))

echo
echo "== schema evolution"
# A compatible evolution goes live: PaymentProcessed v2 adds `currency` with a default; the
# subject takes it, and a payment version declaring it deploys into the running pipeline.
"$weir" schema register payments-value --file "$schemas/payment_processed.v2.avsc"
"$weir" plugin schemas "$rust/weir_ecommerce_payment.wasm" --writes "avro:$schemas/payment_processed.v2.avsc" -o "$data/payment-v2.wasm" >/dev/null 2>&1
"$weir" plugin deploy payment "$data/payment-v2.wasm"
# A breaking change is refused at deploy, before it runs: amount_cents renamed, no default.
"$weir" plugin schemas "$rust/weir_ecommerce_payment.wasm" --writes "avro:$schemas/payment_processed.breaking.avsc" -o "$data/payment-v3.wasm" >/dev/null 2>&1
if "$weir" plugin deploy payment "$data/payment-v3.wasm" 2>"$data/refused"; then
  echo "  FAIL the breaking change was deployed"; failed=1
else
  echo "  refused: $(cat "$data/refused")"
  grep -q "amount" "$data/refused" || { echo "  FAIL the refusal does not name the field"; failed=1; }
fi
live=$("$weir" plugin describe payment | awk '/^plugin/ {print $2}')
check "payment version running after the refusal (v2 stays live)" "${live#payment@}" 2
[ "$failed" -eq 0 ] && echo "== OK: the order flow holds" || { echo "== FAILED"; tail -20 "$data/server.log"; exit 1; }

// Tests of the JS shipping service against values computed from the Rust service's logic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';
import { shortHash } from '../src/events.js';

const inventory = (order_id) => testing.message(
  JSON.stringify({ order_id, customer: 'ada', sku: 'sku-1', qty: 2, remaining: 8 }),
  { key: order_id, headers: { 'weir-type': 'InventoryUpdated' } },
);

test('short_hash is FNV-1a 64, low 32 bits', () => {
  assert.equal(shortHash(''), '84222325');
  assert.equal(shortHash('a'), '8601ec8c');
  assert.equal(shortHash('ship:o-1'), '59e49622');
  assert.equal(shortHash('ship:ORD-1001'), '76389b63');
});

test('ships each order once with a carrier picked by the hash', () => {
  const out = testing.run(plugin, [inventory('o-1'), inventory('o-1'), inventory('o-2')], { config: { carriers: 'parcelco,swiftship' } });
  assert.deepEqual(out.map((o) => o.kind), ['emit', 'drop', 'emit']);
  const [o] = out[0].outputs;
  // 0x59 = 89, odd: the second carrier.
  assert.equal(o.text(), '{"order_id":"o-1","customer":"ada","carrier":"swiftship","tracking":"TRK-59e49622"}');
  assert.deepEqual([o.key, o.headerList, o.topic], ['o-1', [['weir-type', 'ShipmentCreated']], null]);
});

test('a bad event or config fails naming what is wrong', () => {
  const [bad] = testing.run(plugin, ['{"order_id":"o"}']);
  assert.equal(bad.message, 'invalid JSON payload: missing field `customer`');
  assert.throws(() => testing.run(plugin, [], { config: { carrier: 'x' } }), /`carrier`/);
});

// Tests of the handler, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { headers, testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

const payment = (id, cents) =>
  testing.message(JSON.stringify({ account: 'a1', cents }), { headers: { [headers.IDEMPOTENCY_KEY]: id } });

test('adds payments up and handles each once', () => {
  const out = testing.run(plugin, [payment('p1', 100), payment('p2', 50), payment('p1', 100)]);
  assert.deepEqual(out.map((o) => o.kind), ['emit', 'emit', 'drop']);
  assert.equal(out[1].outputs[0].json().balance_cents, 150);
  assert.equal(out.state.getJson('balance:a1'), 150);
});

test('a currency of digits is text', () => {
  const [out] = testing.run(plugin, [payment('p1', 1)], { config: { currency: '978' } });
  assert.equal(out.outputs[0].json().currency, '978');
});

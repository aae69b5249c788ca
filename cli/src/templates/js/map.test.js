// Tests of the map, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

test('bills an order to an account of digits', () => {
  const [out] = testing.run(plugin, [{ id: 7, total_cents: 1000 }], { config: { fee_cents: '50', account: '007' } });
  assert.deepEqual(out.outputs[0].json(), { order: 7, account: '007', amount_cents: 1050 });
});

test('a fee that is not a number names the key', () => {
  assert.throws(() => testing.run(plugin, [], { config: { fee_cents: 'ten' } }), /config key `fee_cents` is not an integer: 'ten'/);
});

test('a payload that is not JSON fails the message, not the plugin', () => {
  const [out] = testing.run(plugin, ['not json']);
  assert.equal(out.kind, 'fail');
  assert.equal(out.retryable, false);
});

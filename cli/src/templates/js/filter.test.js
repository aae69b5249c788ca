// Tests of the filter, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

const kinds = (outcomes) => outcomes.map((o) => o.kind);

test('keeps matching messages', () => {
  const out = testing.run(plugin, [{ status: 'paid' }, { status: 'new' }], { config: { field: 'status', value: 'paid' } });
  assert.deepEqual(kinds(out), ['keep', 'drop']);
});

test('a value of digits is text', () => {
  const out = testing.run(plugin, [{ a: 1 }, { a: '1' }, { a: 2 }], { config: { field: 'a', value: '1' } });
  assert.deepEqual(kinds(out), ['keep', 'keep', 'drop']);
});

test('a missing setting names the key', () => {
  assert.throws(() => testing.run(plugin, [], { config: { field: 'a' } }), /`value`/);
});

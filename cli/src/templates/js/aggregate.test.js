// Tests of the aggregate, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

const at = (timestampMs, key = 'k') => testing.message('x', { key, timestampMs });

test('counts and reports when the window closes', () => {
  const out = testing.run(plugin, [at(1_000), at(2_000), at(61_000)]);
  assert.deepEqual(out.map((o) => o.kind), ['drop', 'drop', 'emit']);
  assert.equal(out[2].outputs[0].text(), 'count/k: 2 in [0, 60000)');
  assert.equal(out[2].outputs[0].key, 'k');
});

test('a tag of digits is text', () => {
  const out = testing.run(plugin, [at(1_000), at(6_000)], { config: { tag: '01', window: '5s' } });
  assert.equal(out[1].outputs[0].text(), '01/k: 1 in [0, 5000)');
});

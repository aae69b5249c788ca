// Tests of the filter-map, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

test('parses or drops', () => {
  const [a, b, c] = testing.run(plugin, ['t1 4.5', 'four', '4.5']);
  assert.equal(a.outputs[0].json(), 4.5);
  assert.equal(b.kind, 'drop');
  // The output equals the input: it passes on as a keep, nothing copied back.
  assert.equal(c.kind, 'keep');
});

test('keeps the sensor named by digits', () => {
  const [a, b] = testing.run(plugin, ['0042 1.5', '42 1.5'], { config: { sensor: '0042' } });
  assert.equal(a.outputs[0].text(), '1.5');
  assert.equal(b.kind, 'drop');
});

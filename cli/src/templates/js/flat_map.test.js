// Tests of the flat-map, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

const words = (outcome) => outcome.outputs.map((o) => o.text());

test('splits words', () => {
  const [out] = testing.run(plugin, ['a b  c']);
  assert.deepEqual(words(out), ['a', 'b', 'c']);
});

test('a separator of digits is text', () => {
  const [out] = testing.run(plugin, [testing.message('a00b', { key: 'k' })], { config: { separator: '00' } });
  assert.deepEqual(words(out), ['a', 'b']);
  assert.equal(out.outputs[1].key, 'k', 'outputs keep the input key');
});

// Tests of the plugin, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

test('shouts', () => {
  const [out] = testing.run(plugin, ['hi']);
  assert.equal(out.outputs[0].text(), 'HI');
});

test('an unchanged message passes on as a keep', () => {
  const [out] = testing.run(plugin, ['OK']);
  assert.equal(out.kind, 'keep');
});

test('rejects go to a topic named by digits', () => {
  const [out] = testing.run(plugin, [''], { config: { rejects: '404' } });
  assert.deepEqual(out, { kind: 'forward', topic: '404' });
});

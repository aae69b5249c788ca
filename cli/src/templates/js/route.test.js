// Tests of the router, run without a server by `node --test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

test('routes high priority', () => {
  const [a, b] = testing.run(plugin, [testing.message('x', { headers: { priority: 'high' } }), 'x']);
  assert.deepEqual(a, { kind: 'forward', topic: 'urgent' });
  assert.equal(b.kind, 'keep');
});

test('routes to a topic named by digits', () => {
  const [a] = testing.run(plugin, [testing.message('x', { headers: { priority: 'high' } })], { config: { to: '2024' } });
  assert.equal(a.topic, '2024');
});

// Tests of js-json-filter, mirroring plugins/json-filter's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

const keeps = (config, docs) => testing.run(plugin, docs, { config }).map((o) => o.kind === 'keep');
const initError = (config) => {
  try {
    testing.run(plugin, [], { config });
  } catch (e) {
    return e.message;
  }
  throw new Error('init accepted the config');
};

test('equals compares strings and numbers', () => {
  assert.deepEqual(keeps({ field: 'order.status', equals: 'paid' },
    ['{"order":{"status":"paid"}}', '{"order":{"status":"new"}}', '{"order":{}}']), [true, false, false]);
  assert.deepEqual(keeps({ field: 'n', equals: '3' }, ['{"n":3}', '{"n":4}', '{"n":"3"}']), [true, false, true]);
});

test('other ops', () => {
  assert.deepEqual(keeps({ field: 'total', op: 'gt', equals: '100' }, ['{"total":150.5}', '{"total":100}', '{"total":"150"}']), [true, false, false]);
  assert.deepEqual(keeps({ field: 'total', op: 'lt', equals: '1e2' }, ['{"total":99}', '{"total":100}']), [true, false]);
  assert.deepEqual(keeps({ field: 'email', op: 'exists' }, ['{"email":null}', '{}']), [true, false]);
  assert.deepEqual(keeps({ field: 'email', op: 'missing' }, ['{"email":null}', '{}']), [false, true]);
  assert.deepEqual(keeps({ field: 'a', op: 'ne', equals: 'x' }, ['{"a":"x"}', '{"a":"y"}', '{}']), [false, true, true]);
  assert.deepEqual(keeps({ field: 'tags', op: 'contains', equals: 'vip' }, ['{"tags":["new","vip"]}', '{"tags":["new"]}', '{"tags":"vip-ish"}']), [true, false, true]);
  assert.deepEqual(keeps({ field: 'items.1.sku', equals: 'b' }, ['{"items":[{"sku":"a"},{"sku":"b"}]}']), [true]);
});

test('invalid payloads fail or drop as configured', () => {
  const [out] = testing.run(plugin, ['not json'], { config: { field: 'a', equals: '1' } });
  assert.equal(out.kind, 'fail');
  assert.equal(out.retryable, false);
  assert.match(out.message, /^invalid JSON payload/);
  assert.deepEqual(keeps({ field: 'a', equals: '1', 'on-invalid': 'drop' }, ['not json']), [false]);
});

test('config errors name the key', () => {
  assert.match(initError({ equals: '1' }), /missing config key `field`/);
  assert.match(initError({ field: 'a' }), /missing config key `equals`/);
  assert.match(initError({ field: 'a', equals: '1', typo: 'x' }), /unknown config key `typo`/);
  assert.equal(initError({ field: 'a', op: 'gt', equals: 'x' }), 'config key `equals` must be a number for op Gt, got "x"');
  assert.equal(initError({ field: 'a', op: 'like', equals: 'x' }), 'config key `op` has invalid value "like": use eq, ne, exists, missing, gt, lt or contains');
  assert.match(initError({ field: 'a', equals: '1', 'on-invalid': 'skip' }), /`on-invalid` has invalid value "skip": use fail or drop/);
  // Reserved keys added by the host are always allowed.
  assert.deepEqual(keeps({ field: 'a', equals: '1', 'weir.version': '3' }, ['{"a":1}']), [true]);
});

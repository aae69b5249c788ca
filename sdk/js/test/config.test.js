// Typed config: text stays text, numbers parse where asked, errors name the key and the bad text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Config } from '../src/index.js';

test('errors name the key and the bad text', () => {
  const c = new Config([['min', 'abc'], ['on', 'yes'], ['w', '5 weeks'], ['x', '1.5']]);
  assert.throws(() => c.int('min'), { message: "config key `min` is not an integer: 'abc'" });
  assert.throws(() => c.int('x'), /`x` is not an integer: '1.5'/);
  assert.throws(() => c.number('min'), /`min` is not a number: 'abc'/);
  assert.throws(() => c.bool('on'), /`on` is not a boolean/);
  assert.throws(() => c.durationMs('w'), /`w` is not a duration .*'5 weeks'/);
  assert.throws(() => c.require('max'), /missing config key `max`/);
  assert.throws(() => c.int('max', { required: true }), /`max`/);
  assert.equal(c.int('other', { default: 7 }), 7);
  assert.equal(c.number('x'), 1.5);
});

test('digits-only text stays text', () => {
  const c = new Config({ zip: '02134', n: '42', on: 'true', every: '1500ms', tags: 'a, b', ids: '["1","2"]' });
  assert.equal(c.string('zip'), '02134');
  assert.equal(c.get('n'), '42');
  assert.equal(c.int('n'), 42);
  assert.equal(c.bool('on'), true);
  assert.equal(c.durationMs('every'), 1500);
  assert.deepEqual(c.list('tags'), ['a', 'b']);
  assert.deepEqual(c.list('ids'), ['1', '2']);
});

test('durations', () => {
  const c = new Config({ a: '5m', b: '10s', c: '24h', d: '7d', e: '250' });
  assert.deepEqual(['a', 'b', 'c', 'd', 'e'].map((k) => c.durationMs(k)), [300_000, 10_000, 86_400_000, 604_800_000, 250]);
});

test('reserved keys are apart, always allowed, and expand', () => {
  const c = new Config([['weir.version', '7'], ['weir.plugin', 'p'], ['tag', '${weir.plugin}@${weir.version} ${weir.nope}']]);
  assert.equal(c.version, 7);
  assert.equal(c.reserved('plugin'), 'p');
  c.rejectUnknown(['tag']);
  assert.equal(c.expand(c.get('tag')), 'p@7 ${weir.nope}');
  assert.deepEqual(c.entries(), [['tag', '${weir.plugin}@${weir.version} ${weir.nope}']]);
});

test('unknown keys are rejected, prefixes admitted', () => {
  const c = new Config({ 'set.a': '1', field: 'x' });
  c.rejectUnknown(['field', 'set.']);
  assert.throws(() => c.rejectUnknown(['field']), /unknown config key `set.a` \(known keys: field\)/);
  assert.deepEqual(c.withPrefix('set.'), [['a', '1']]);
});

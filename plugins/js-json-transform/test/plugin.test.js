// Tests of js-json-transform, mirroring plugins/json-transform's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

const run = (config, doc, opts = {}) => testing.run(plugin, [testing.message(doc, { key: 'k', ...opts })], { config })[0];

test('renames, drops and sets in order', () => {
  const out = run({ 'rename.user.mail': 'email', drop: 'secret, user.tmp', 'set.meta.v': '2', 'set.source': 'web' },
    '{"user":{"mail":"a@b","tmp":1,"name":"x"},"secret":"s"}', { headers: { h: 'v' } });
  const [o] = out.outputs;
  assert.equal(o.text(), '{"email":"a@b","meta":{"v":2},"source":"web","user":{"name":"x"}}', 'keys sorted, as the Rust plugin writes');
  assert.deepEqual([o.key, o.headers, o.topic], ['k', { h: 'v' }, null], 'key and headers kept');
});

test('set values expand the reserved keys', () => {
  const out = run({ 'set.by': '${weir.plugin}@${weir.version}', 'set.n': '${weir.version}', 'weir.plugin': 'jt', 'weir.version': '4' }, '{}');
  assert.deepEqual(out.outputs[0].json(), { by: 'jt@4', n: 4 });
});

test('an unchanged document passes on as a keep', () => {
  assert.equal(run({ drop: 'absent' }, '{"a":1,"b":2}').kind, 'keep');
});

test('reply goes to the reply-to topic with the correlation id', () => {
  const out = run({ reply: 'true', 'set.ok': 'true' }, '{}', { headers: { 'weir-reply-to': 'inbox', 'weir-correlation-id': 'c7' } });
  const [o] = out.outputs;
  assert.deepEqual([o.text(), o.topic, o.key, o.headers], ['{"ok":true}', 'inbox', null, { 'weir-correlation-id': 'c7' }]);
  assert.match(run({ reply: 'true' }, '{}').message, /no weir-reply-to and weir-correlation-id/);
});

test('rejects non-objects, impossible paths and bad config', () => {
  assert.equal(run({ 'set.a': '1' }, '[1,2]').message, 'payload is JSON but not an object');
  assert.match(run({ 'set.a': '1' }, 'nope').message, /^invalid JSON payload/);
  assert.equal(run({ 'set.a.b': '1' }, '{"a":5}').message, 'cannot set `a.b`: a parent is not an object');
  assert.equal(run({ 'rename.x': 'a.b' }, '{"x":1,"a":5}').message, 'cannot rename `x` to `a.b`: a parent of `a.b` is not an object');
  const initError = (config) => assert.throws(() => testing.run(plugin, [], { config }));
  initError({ 'sett.a': '1' });
  assert.throws(() => testing.run(plugin, [], { config: { 'sett.a': '1' } }), /`sett.a`/);
  assert.throws(() => testing.run(plugin, [], { config: { 'rename.a': '' } }), /config key `rename.` needs a target path, got ""/);
  assert.throws(() => testing.run(plugin, [], { config: { reply: 'yes' } }), /config key `reply` has invalid value "yes"/);
});

// Tests of js-hostile's harmless modes (loop and alloc are proven against the real sandbox by `weir plugin test`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Abort, testing } from '@weir/sdk';
import plugin from '../src/plugin.js';

test('only the trigger misbehaves', () => {
  const out = testing.run(plugin, ['ok', 'bad'], { config: { mode: 'fail', trigger: 'bad' } });
  assert.deepEqual([...out], [{ kind: 'keep' }, { kind: 'fail', message: 'this message is bad', retryable: false }]);
  const [r] = testing.run(plugin, ['x'], { config: { mode: 'fail-retryable' } });
  assert.deepEqual(r, { kind: 'fail', message: 'a dependency is busy', retryable: true });
});

test('panic aborts the instance', () => {
  assert.throws(() => testing.run(plugin, ['boom'], { config: { mode: 'panic', trigger: 'boom' } }), Abort);
});

test('bad config names the key', () => {
  assert.throws(() => testing.run(plugin, [], { config: { mood: 'x' } }), /`mood`/);
  assert.throws(() => testing.run(plugin, [], { config: { mode: 'explode' } }), /`mode`/);
});

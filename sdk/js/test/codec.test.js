// The packed codec: round trips, lazy messages, and damaged buffers refused rather than trusted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchView, PackError, ResultWriter, readResult, writeBatch } from '../src/codec.js';
import { Message } from '../src/message.js';
import { component, filter } from '../src/index.js';

const enc = (s) => new TextEncoder().encode(s);

test('a batch round-trips and messages read it in place', () => {
  const buf = writeBatch('orders', [
    { offset: 7, timestampMs: 100, partition: 2, key: enc('k1'), value: enc('hello'), headers: [['h', 'v'], ['weir-type', 'X'], ['h', 'w']] },
    { offset: 8, timestampMs: 101, partition: 2, key: null, value: enc(''), headers: [] },
  ]);
  const b = new BatchView(buf);
  assert.equal(b.count, 2);
  assert.equal(b.topic, 'orders');
  const a = Message.packed(b, 0);
  assert.deepEqual([a.offset, a.timestampMs, a.partition, a.key, a.text(), a.topic], [7, 100, 2, 'k1', 'hello', 'orders']);
  assert.equal(a.value.buffer, buf.buffer, 'the value is a view, not a copy');
  assert.deepEqual(a.headerList(), [['h', 'v'], ['weir-type', 'X'], ['h', 'w']]);
  assert.equal(a.header('h'), 'v');
  assert.equal(a.headers.get('h'), 'v', 'the first of a repeated header wins');
  assert.equal(a.type, 'X');
  const c = Message.packed(b, 1);
  assert.deepEqual([c.key, c.keyBytes, c.value.length, c.headerList().length], [null, null, 0, 0]);
});

test('a result round-trips through the host-side reader', () => {
  const w = new ResultWriter();
  for (let round = 0; round < 2; round++) {
    w.keep();
    w.emit([
      { key: enc('k'), value: enc('v1'), headers: [['a', 'b']], topic: null },
      { key: null, value: enc('v2'), headers: [], topic: 'eu' },
    ]);
    w.fail('bad input ✗', true);
    w.forward('eu');
    w.drop();
    const r = readResult(w.finish(), 5);
    assert.deepEqual(r.map((o) => o.kind), ['keep', 'emit', 'fail', 'forward', 'drop'], `round ${round}`);
    const [o1, o2] = r[1].outputs;
    assert.deepEqual([new TextDecoder().decode(o1.key), new TextDecoder().decode(o1.value), o1.headers, o1.topic], ['k', 'v1', [['a', 'b']], null]);
    assert.deepEqual([o2.key, o2.topic], [null, 'eu']);
    assert.deepEqual(r[2], { kind: 'fail', message: 'bad input ✗', retryable: true });
    assert.deepEqual(r[3], { kind: 'forward', topic: 'eu' });
  }
});

test('the data region grows as needed', () => {
  const w = new ResultWriter();
  const big = new Uint8Array(100_000).fill(7);
  w.emit([{ key: 'x'.repeat(5000), value: big, headers: [['n', 'é'.repeat(3000)]], topic: null }]);
  const [o] = readResult(w.finish(), 1);
  assert.equal(o.outputs[0].value.length, 100_000);
  assert.equal(o.outputs[0].headers[0][1].length, 3000);
});

test('damaged results are refused or still fully readable', () => {
  const w = new ResultWriter();
  w.emit([{ key: null, value: enc('xyz'), headers: [['n', 'v']], topic: 't' }]);
  const good = w.finish();
  for (let i = 0; i < good.length; i++) {
    for (const flip of [0x01, 0x80, 0xff]) {
      const bad = good.slice();
      bad[i] ^= flip;
      try {
        readResult(bad, 1);
      } catch (e) {
        assert.ok(e instanceof PackError, `byte ${i}: ${e}`);
      }
    }
  }
  assert.throws(() => readResult(good.subarray(0, good.length - 1), 1), PackError);
  assert.throws(() => readResult(good, 2), /1 outcomes for a batch of 2/);
});

test('damaged batches are refused, and the component answers them with no outcomes', () => {
  const good = writeBatch('t', [{ key: enc('k'), value: enc('v'), headers: [['a', 'b']] }]);
  assert.throws(() => new BatchView(enc('WPB2\xff\xff\xff\xff')), PackError);
  assert.throws(() => new BatchView(good.subarray(0, good.length - 2)), PackError);
  let refused = 0;
  for (let i = 0; i < 64; i++) {
    const bad = good.slice();
    bad[i] ^= 0xff;
    try {
      new BatchView(bad);
    } catch (e) {
      assert.ok(e instanceof PackError);
      refused++;
    }
  }
  assert.ok(refused > 10);
  const c = component(filter(() => true));
  c.init([]);
  const out = c.process(enc('garbage'));
  assert.equal(new DataView(out.buffer).getUint32(4, true), 0);
});

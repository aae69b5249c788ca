// Every kind through testing.run (the component's codec path): outcomes, inheritance, keep-when-identical, failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Abort, Fatal, Output, Retryable, abort, aggregate, byField, byHeader, byKey, emit, fail, filter, filterMap, flatMap,
  forward, handler, keep, log, map, output, plugin, reply, route, state, testing,
} from '../src/index.js';

const kinds = (outs) => outs.map((o) => o.kind);
const msg = testing.message;

test('filter: function form gets the config', () => {
  const f = filter((m, config) => m.json().total >= config.int('min', { default: 100 }));
  assert.deepEqual(kinds(testing.run(f, [{ total: 150 }, { total: 5 }], { config: { min: 100 } })), ['keep', 'drop']);
});

test('map: object → JSON, string → text, bytes → raw, Output as is; key and headers inherited', () => {
  const cases = [[{ a: 1 }, '{"a":1}'], ['hi', 'hi'], [new Uint8Array([104]), 'h'], [output('o', { key: 'k2', headers: {} }), 'o']];
  for (const [ret, text] of cases) {
    const [o] = testing.run(map(() => ret), [msg('in', { key: 'k', headers: { h: 'v' } })]);
    assert.equal(o.outputs[0].text(), text);
    if (ret instanceof Output) assert.deepEqual([o.outputs[0].key, o.outputs[0].headerList], ['k2', []]);
    else assert.deepEqual([o.outputs[0].key, o.outputs[0].headers], ['k', { h: 'v' }]);
  }
});

test('keep when identical: an unchanged output is a code, a changed key or header is not', () => {
  const m = msg('same', { key: 'k', headers: [['h', 'v']] });
  assert.equal(testing.run(map((x) => x.text()), [m])[0].kind, 'keep');
  assert.equal(testing.run(map((x) => x), [m])[0].kind, 'keep');
  assert.equal(testing.run(map(() => output('same', { key: 'k', headers: { h: 'v' } })), [m])[0].kind, 'keep');
  assert.deepEqual(testing.run(map(() => output('same').to('t')), [m])[0], { kind: 'forward', topic: 't' });
  assert.equal(testing.run(map(() => output('same', { key: 'other' })), [m])[0].kind, 'emit');
  assert.equal(testing.run(map(() => output('same').header('x', 'y')), [m])[0].kind, 'emit');
  assert.equal(testing.run(map(() => output('same', { key: null })), [m])[0].kind, 'emit');
});

test('filterMap, flatMap and route', () => {
  const fm = filterMap((m) => (m.text() === 'x' ? null : `${m.text()}!`));
  assert.deepEqual(kinds(testing.run(fm, ['x', 'y'])), ['drop', 'emit']);
  const [o] = testing.run(flatMap((m) => m.text().split(',')), [msg('a,b', { key: 'k' })]);
  assert.deepEqual(o.outputs.map((x) => [x.text(), x.key]), [['a', 'k'], ['b', 'k']]);
  assert.deepEqual(testing.run(flatMap(() => []), ['z'])[0], { kind: 'emit', outputs: [] });
  const r = route((m) => m.header('to') ?? null);
  assert.deepEqual([...testing.run(r, [msg('a', { headers: { to: 'eu' } }), 'b'])], [{ kind: 'forward', topic: 'eu' }, { kind: 'keep' }]);
});

test('plugin: every outcome helper, and plain returns', () => {
  const p = plugin({
    init: (config) => ({ to: config.string('to', { default: 'rejects' }) }),
    process: (m, { to }) => {
      switch (m.text()) {
        case 'keep': return keep();
        case 'fwd': return forward(to);
        case 'fail': return fail('nope', { retryable: true });
        case 'two': return emit('a', output('b', { to: 'x' }));
        case 'list': return ['c', 'd'];
        case 'reply': return emit(reply(m, 'pong'));
        default: return 'plain';
      }
    },
  });
  const req = msg('reply', { key: 'k', headers: { 'weir-reply-to': 'inbox', 'weir-correlation-id': 'c1' } });
  const out = testing.run(p, ['keep', 'fwd', 'fail', 'two', 'list', 'other', req], { config: { to: '404' } });
  assert.deepEqual(kinds(out), ['keep', 'forward', 'fail', 'emit', 'emit', 'emit', 'emit']);
  assert.equal(out[1].topic, '404');
  assert.deepEqual(out[2], { kind: 'fail', message: 'nope', retryable: true });
  assert.deepEqual(out[3].outputs.map((o) => [o.text(), o.topic]), [['a', null], ['b', 'x']]);
  assert.deepEqual(out[4].outputs.map((o) => o.text()), ['c', 'd']);
  assert.deepEqual([out[6].outputs[0].topic, out[6].outputs[0].key, out[6].outputs[0].headers], ['inbox', null, { 'weir-correlation-id': 'c1' }]);
  assert.match(testing.run(plugin((m) => emit(reply(m, 'x'))), ['q'])[0].message, /no weir-reply-to/);
});

test('failures: Retryable, Fatal, unexpected exceptions, promises, bad JSON', () => {
  const p = plugin((m) => {
    const t = m.text();
    if (t === 'r') throw new Retryable('busy');
    if (t === 'f') throw new Fatal('bad');
    if (t === 'j') return m.json();
    if (t === 'n') return null.x;
    if (t === 's') throw 'a string';
    return Promise.resolve(keep());
  });
  const out = testing.run(p, ['r', 'f', 'j', 'n', 's', 'p']);
  assert.deepEqual(out[0], { kind: 'fail', message: 'busy', retryable: true });
  assert.deepEqual(out[1], { kind: 'fail', message: 'bad', retryable: false });
  assert.match(out[2].message, /^invalid JSON payload/);
  assert.match(out[3].message, /^TypeError: /);
  assert.equal(out[4].message, 'a string');
  assert.match(out[5].message, /returned a Promise/);
  assert.ok(out.every((o) => o.kind === 'fail'));
});

test('abort escapes as the Abort sentinel (the component traps), after logging the reason', () => {
  const p = plugin((m) => (m.text() === 'boom' ? abort('gave up') : keep()));
  const inst = testing.instance(p);
  assert.equal(inst.run(['fine'])[0].kind, 'keep');
  assert.throws(() => inst.run(['boom']), Abort);
});

test('init errors name the key; logs are captured', () => {
  const f = filter({ init: (c) => c.int('min', { required: true }), filter: () => true });
  assert.throws(() => testing.run(f, [], { config: { min: 'abc' } }), { message: "config key `min` is not an integer: 'abc'" });
  assert.throws(() => testing.run(f, []), /missing config key `min`/);
  const l = testing.run(filter(() => { log.info('seen', { n: 1 }); return true; }), ['a']);
  assert.deepEqual(l.logs, [{ level: 'info', message: 'seen {"n":1}' }]);
});

test('handler: idempotency by key, header and field; remembered only on success; TTL expiry', () => {
  let calls = 0;
  const h = (idempotency) => handler({
    idempotency,
    handle: (m) => {
      calls++;
      if (m.text().includes('fail')) throw new Retryable('later');
      return [{ seen: m.text() }];
    },
  });
  const byK = testing.instance(h(byKey({ windowMs: 1000 })), { now: 0 });
  assert.deepEqual(kinds(byK.run([msg('a', { key: 'o1' }), msg('b', { key: 'o1' }), msg('c')])), ['emit', 'drop', 'emit']);
  assert.deepEqual(kinds(byK.run([msg('again', { key: 'o1' })])), ['drop'], 'across batches');
  byK.state.advance(1000);
  assert.deepEqual(kinds(byK.run([msg('later', { key: 'o1' })])), ['emit'], 'the window expired');
  const byH = testing.run(h(byHeader('id')), [msg('x', { headers: { id: '1' } }), msg('y', { headers: { id: '1' } })]);
  assert.deepEqual(kinds(byH), ['emit', 'drop']);
  assert.deepEqual(byH.state.keys(), ['idem:1']);
  const byF = testing.run(h(byField('order.id')), [{ order: { id: 5 } }, { order: { id: 5 } }, { order: {} }, 'fail once']);
  assert.deepEqual(kinds(byF), ['emit', 'drop', 'emit', 'fail']);
  calls = 0;
  const retried = testing.instance(h(byKey()));
  assert.deepEqual(kinds(retried.run([msg('fail', { key: 'k' }), msg('ok', { key: 'k' })])), ['fail', 'emit']);
  assert.equal(calls, 2, 'a failed attempt is not remembered');
});

test('handler state: get/set/delete, text and JSON, TTL', () => {
  const h = handler({
    handle: (m) => {
      const n = (state.getJson('n') ?? 0) + 1;
      state.setJson('n', n);
      state.set(new Uint8Array([0, 1]), 'bytes key', { ttlMs: 10 });
      if (n === 2) state.delete('gone');
      return n === 2 ? [state.getText(new Uint8Array([0, 1]))] : null;
    },
  });
  const inst = testing.instance(h, { state: { gone: 'x', pre: { a: 1 } }, now: 0 });
  assert.deepEqual(inst.run(['a'])[0], { kind: 'emit', outputs: [] });
  assert.equal(inst.run(['b'])[0].outputs[0].text(), 'bytes key');
  assert.equal(inst.state.getText('gone'), undefined);
  assert.deepEqual(inst.state.getJson('pre'), { a: 1 });
  inst.state.advance(10);
  assert.equal(inst.state.get(new Uint8Array([0, 1])), undefined, 'expired');
});

test('aggregate: windows close on a later window, late inputs are dropped and counted', () => {
  const sums = aggregate({
    init: (c) => ({ tag: c.string('tag', { default: 'sum' }) }),
    windowMs: 60_000,
    key: (m) => m.json().customer,
    time: (m) => m.json().at,
    add: (acc = 0, m) => acc + m.json().amount,
    emit: (key, w, acc, { tag }) => ({ tag, key, total: acc, from: w.startMs, to: w.endMs }),
  });
  const inst = testing.instance(sums, { config: { tag: '007' } });
  const ev = (customer, amount, at) => ({ customer, amount, at });
  const first = inst.run([ev('a', 1, 1000), ev('b', 2, 2000), ev('a', 3, 59_999)]);
  assert.deepEqual(kinds(first), ['drop', 'drop', 'drop']);
  const [closing, late] = inst.run([ev('a', 10, 60_000), ev('b', 1, 500)]);
  assert.equal(closing.kind, 'emit');
  assert.deepEqual(closing.outputs.map((o) => [o.key, o.json(), o.headerList]), [
    ['a', { tag: '007', key: 'a', total: 4, from: 0, to: 60_000 }, []],
    ['b', { tag: '007', key: 'b', total: 2, from: 0, to: 60_000 }, []],
  ]);
  assert.equal(late.kind, 'drop');
  assert.equal(inst.state.getJson('agg.late'), 1);
  assert.equal(inst.state.getJson('agg.window'), 60_000);
  assert.deepEqual(inst.state.getJson('agg.keys'), ['a']);
  assert.equal(inst.state.getJson('agg.acc:a'), 10);
  assert.throws(() => testing.run(aggregate({ windowMs: 0, key: () => 'k', add: () => 1, emit: () => 'x' }), []), /longer than 0/);
});

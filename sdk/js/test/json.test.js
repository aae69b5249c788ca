// Dotted JSON paths, and config values read as JSON or text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { json } from '../src/index.js';

test('paths read, write and remove', () => {
  const doc = { a: { b: [1, { c: 'x' }] } };
  assert.equal(json.get(doc, 'a.b.1.c'), 'x');
  assert.equal(json.get(doc, 'a.z'), undefined);
  assert.ok(json.set(doc, 'a.new.deep', 5));
  assert.equal(json.get(doc, 'a.new.deep'), 5);
  assert.ok(!json.set(doc, 'a.new.deep.more', 1), 'cannot descend into a number');
  assert.equal(json.remove(doc, 'a.b.0'), 1);
  assert.equal(json.get(doc, 'a.b.0.c'), 'x');
  assert.equal(json.remove(doc, 'a.missing.x'), undefined);
});

test('values parse as JSON or text, and compare as text', () => {
  assert.equal(json.parseValue('42'), 42);
  assert.equal(json.parseValue('"42"'), '42');
  assert.equal(json.parseValue('paid'), 'paid');
  assert.equal(json.asText('paid'), 'paid');
  assert.equal(json.asText(42), '42');
  assert.equal(json.stringify({ b: 1, a: { d: 2, c: 3 } }), '{"a":{"c":3,"d":2},"b":1}');
});

// sdk/testdata/json-text.json: what Rust's serde_json writes for each input (checked by the
// Rust SDK's own test), and where JavaScript's one number type must differ, what it writes.
test('documents are written byte for byte as the Rust SDK writes them, or as the table says', async () => {
  const { readFile } = await import('node:fs/promises');
  const cases = JSON.parse(await readFile(new URL('../../testdata/json-text.json', import.meta.url), 'utf8'));
  assert.ok(cases.length >= 6);
  for (const c of cases) assert.equal(json.stringify(JSON.parse(c.in)), c.js ?? c.rust, c.case);
});

test('compact keeps key order and writes numbers as stringify does', () => {
  assert.equal(json.compact({ b: -0, a: 1e-5, c: [undefined, 1e21] }), '{"b":-0.0,"a":0.00001,"c":[null,1e+21]}');
  const cyclic = {};
  cyclic.self = cyclic;
  assert.throws(() => json.compact(cyclic), /cyclic/);
  assert.throws(() => json.stringify({ n: 1n }), /BigInt/);
});

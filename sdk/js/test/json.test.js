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

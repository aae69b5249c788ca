// Confluent's framing: what the serializers write reads back, and unframed bytes are refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { schemas } from '../src/index.js';

test('framing round-trips', () => {
  const f = schemas.frame(7, 'xyz');
  assert.deepEqual([...f], [0, 0, 0, 0, 7, 120, 121, 122]);
  const u = schemas.unframe(f);
  assert.equal(u.id, 7);
  assert.equal(new TextDecoder().decode(u.rest), 'xyz');
  assert.equal(schemas.unframe(new Uint8Array([1, 0, 0, 0, 7])), null);
  assert.deepEqual(schemas.jsonValue(schemas.frame(3, '{"a":1}')), { id: 3, value: { a: 1 } });
  assert.throws(() => schemas.jsonValue(new TextEncoder().encode('{"a":1}')));
});

test('protobuf framing matches the Rust and Python SDKs', () => {
  const first = schemas.frameProtobuf(9, [0], new Uint8Array([109]));
  assert.deepEqual([...first], [0, 0, 0, 0, 9, 0, 109]);
  const u = schemas.unframeProtobuf(first);
  assert.deepEqual([u.id, u.indexes, [...u.message]], [9, [0], [109]]);
  const nested = schemas.unframeProtobuf(schemas.frameProtobuf(9, [1, 2], new Uint8Array([109])));
  assert.deepEqual([nested.indexes, [...nested.message]], [[1, 2], [109]]);
});

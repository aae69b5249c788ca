// Confluent's wire framing, for plugins reading and writing schema-registry records: a zero
// byte, the schema id (4 bytes, big-endian), for Protobuf the message indexes (zigzag varints;
// a single 0 for the first message), then the encoded value. What a plugin reads and writes is
// declared in package.json (`"weir": {"schemas": {"reads": "subject:NAME", "writes":
// "avro:FILE"}}`); `weir plugin build` embeds it and the server checks pipelines against it.

/** `{id, rest}` of a framed payload, or null if it is not framed. */
export function unframe(bytes) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (b.length < 5 || b[0] !== 0) return null;
  const id = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(1, false);
  return { id, rest: b.subarray(5) };
}

/** `payload` framed with schema `id` (Avro, JSON Schema). */
export function frame(id, payload) {
  const p = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const out = new Uint8Array(5 + p.length);
  new DataView(out.buffer).setUint32(1, id, false);
  out.set(p, 5);
  return out;
}

/** `{id, value}` of a framed JSON Schema payload; throws if it is not one. */
export function jsonValue(bytes) {
  const found = unframe(bytes);
  if (!found) throw new Error("not in Confluent's framing (byte 0, a 4-byte schema id, the payload)");
  return { id: found.id, value: JSON.parse(new TextDecoder().decode(found.rest)) };
}

function zigzag(b, at) {
  let v = 0;
  for (let i = 0; i < 5 && at + i < b.length; i++) {
    v += (b[at + i] & 0x7f) * 2 ** (7 * i);
    if (!(b[at + i] & 0x80)) return { n: v % 2 === 0 ? v / 2 : -(v + 1) / 2, at: at + i + 1 };
  }
  return null;
}

function putZigzag(out, n) {
  let v = n >= 0 ? 2 * n : -2 * n - 1;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** `{id, indexes, message}` of a framed Protobuf payload, or null. */
export function unframeProtobuf(bytes) {
  const found = unframe(bytes);
  if (!found) return null;
  let read = zigzag(found.rest, 0);
  if (!read) return null;
  if (read.n === 0) return { id: found.id, indexes: [0], message: found.rest.subarray(read.at) };
  if (read.n < 0 || read.n > 64) return null;
  const indexes = [];
  let at = read.at;
  for (let i = 0, count = read.n; i < count; i++) {
    read = zigzag(found.rest, at);
    if (!read) return null;
    indexes.push(read.n);
    at = read.at;
  }
  return { id: found.id, indexes, message: found.rest.subarray(at) };
}

/** `message` framed with schema `id` and its message `indexes` (`[0]`: the first message). */
export function frameProtobuf(id, indexes, message) {
  const head = [];
  if (indexes.length === 1 && indexes[0] === 0) head.push(0);
  else {
    putZigzag(head, indexes.length);
    for (const i of indexes) putZigzag(head, i);
  }
  const framed = frame(id, new Uint8Array([...head, ...message]));
  return framed;
}

// The packed WPB2 batch / WPR2 result of weir:plugin@0.2.0 (wit/weir.wit), read and written in place.

const NONE = 0xffffffff;
const BATCH_HEADER = 16;
const ENTRY = 48;
const RESULT_HEADER = 24;
const CODE = 8;
const OUTPUT = 32;
const TOPIC = 8;
const FAILURE = 12;
const MAGIC_BATCH = [0x57, 0x50, 0x42, 0x32];
const MAGIC_RESULT = [0x57, 0x50, 0x52, 0x32];

export const KEEP = 0, DROP = 1, EMIT = 2, FAIL = 3, FORWARD = 4;
export { NONE };

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** A packed buffer that is not what it claims to be. */
export class PackError extends Error {
  constructor(why) {
    super(`malformed packed buffer: ${why}`);
    this.name = 'PackError';
  }
}

/**
 * Whether `v` is a Uint8Array from any realm: componentize-js hands `list<u8>` over as a Uint8Array
 * of its bindings' realm, for which `instanceof Uint8Array` is false.
 */
export function isBytes(v) {
  return v instanceof Uint8Array || Object.prototype.toString.call(v) === '[object Uint8Array]';
}

/** UTF-8 text of `bytes`; the fatal decoder refuses bad sequences (a bad header is refused, not mangled). */
export function text(bytes) {
  return utf8.decode(bytes);
}

/** UTF-8 bytes of `s`. */
export function bytes(s) {
  return encoder.encode(s);
}

function view(buf) {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function magic(buf, m) {
  return buf.length >= 4 && buf[0] === m[0] && buf[1] === m[1] && buf[2] === m[2] && buf[3] === m[3];
}

function u32(dv, at) {
  if (at + 4 > dv.byteLength) throw new PackError(`a u32 at ${at} is past the end (${dv.byteLength} bytes)`);
  return dv.getUint32(at, true);
}

// Offsets and lengths are u32, so their sum stays exact in a double.
function range(dv, off, len, what) {
  if (off + len > dv.byteLength) throw new PackError(`${what} at ${off}..+${len} is outside the ${dv.byteLength} bytes`);
}

function table(dv, at, count, row, what) {
  const end = at + count * row;
  if (end > dv.byteLength) throw new PackError(`${count} ${what} do not fit in ${dv.byteLength} bytes`);
  return end;
}

/** Walk a header block once: every range inside it, nothing after the last header. */
function checkHeaders(dv, off, len, count) {
  range(dv, off, len, 'a header block');
  let at = off;
  const end = off + len;
  for (let i = 0; i < count; i++) {
    if (at + 8 > end) throw new PackError('a header runs past its block');
    const n = dv.getUint32(at, true), v = dv.getUint32(at + 4, true);
    at += 8 + n + v;
    if (at > end) throw new PackError('a header runs past its block');
  }
  if (at !== end) throw new PackError('a header block has bytes after its last header');
}

/** The headers of a block as [name, value] pairs (validated ranges; UTF-8 checked here). */
export function readHeaders(buf, dv, off, count) {
  const out = new Array(count);
  let at = off;
  for (let i = 0; i < count; i++) {
    const n = dv.getUint32(at, true), v = dv.getUint32(at + 4, true);
    const name = text(buf.subarray(at + 8, at + 8 + n));
    out[i] = [name, text(buf.subarray(at + 8 + n, at + 8 + n + v))];
    at += 8 + n + v;
  }
  return out;
}

/**
 * A validated batch: the structure (magic, tables, ranges, header blocks) is checked here, once;
 * keys, values and headers are read later, in place, when a message asks.
 */
export class BatchView {
  constructor(buf) {
    if (!isBytes(buf)) throw new PackError('a batch must be a Uint8Array');
    if (!magic(buf, MAGIC_BATCH)) throw new PackError('not a packed batch (magic)');
    const dv = view(buf);
    this.buf = buf;
    this.dv = dv;
    this.count = u32(dv, 4);
    const topicOff = u32(dv, 8), topicLen = u32(dv, 12);
    range(dv, topicOff, topicLen, 'the topic');
    this.topic = text(buf.subarray(topicOff, topicOff + topicLen));
    table(dv, BATCH_HEADER, this.count, ENTRY, 'entries');
    for (let i = 0; i < this.count; i++) {
      const e = BATCH_HEADER + i * ENTRY;
      const keyLen = dv.getUint32(e + 24, true);
      if (keyLen !== NONE) range(dv, dv.getUint32(e + 20, true), keyLen, 'a key');
      range(dv, dv.getUint32(e + 28, true), dv.getUint32(e + 32, true), 'a value');
      checkHeaders(dv, dv.getUint32(e + 36, true), dv.getUint32(e + 40, true), dv.getUint32(e + 44, true));
    }
  }

  /** Where entry `i` starts. */
  entry(i) {
    return BATCH_HEADER + i * ENTRY;
  }
}

/** A growable byte region, reused from batch to batch so a batch costs one final allocation. */
class Data {
  constructor(size = 4096) {
    this.buf = new Uint8Array(size);
    this.dv = view(this.buf);
    this.len = 0;
  }

  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
    this.dv = view(grown);
  }

  /** Append raw bytes; returns where they went. */
  put(b) {
    this.reserve(b.length);
    const at = this.len;
    this.buf.set(b, at);
    this.len += b.length;
    return at;
  }

  /** Append UTF-8 text; returns [offset, length]. */
  putText(s) {
    this.reserve(s.length * 3);
    const at = this.len;
    const { written } = encoder.encodeInto(s, this.buf.subarray(at));
    this.len += written;
    return [at, written];
  }

  /** Append a header block; returns [offset, length, count]. */
  putHeaders(headers) {
    const start = this.len;
    for (const [name, value] of headers) {
      this.reserve(8);
      const at = this.len;
      this.len += 8;
      const [, n] = this.putText(name);
      const [, v] = this.putText(value);
      this.dv.setUint32(at, n, true);
      this.dv.setUint32(at + 4, v, true);
    }
    return [start, this.len - start, headers.length];
  }

  /** Key, value, headers; the seven u32s entries and outputs share (offsets relative to the data). */
  putRecord(key, value, headers) {
    let keyOff = 0, keyLen = NONE;
    if (typeof key === 'string') [keyOff, keyLen] = this.putText(key);
    else if (key != null) [keyOff, keyLen] = [this.put(key), key.length];
    const valueOff = this.put(value);
    const [hOff, hLen, hCount] = this.putHeaders(headers);
    return [keyOff, keyLen, valueOff, value.length, hOff, hLen, hCount];
  }
}

/** Builds one packed result per batch; its data region is kept for the next batch. */
export class ResultWriter {
  constructor() {
    this.data = new Data();
    this.reset();
  }

  reset() {
    this.data.len = 0;
    this.codes = [];
    this.outputs = [];
    this.topics = [];
    this.topicIndex = new Map();
    this.failures = [];
  }

  keep() {
    this.codes.push(KEEP, 0);
  }

  drop() {
    this.codes.push(DROP, 0);
  }

  fail(message, retryable) {
    const [off, len] = this.data.putText(message);
    this.codes.push(FAIL, this.failures.length / 3);
    this.failures.push(off, len, retryable ? 1 : 0);
  }

  forward(topic) {
    this.codes.push(FORWARD, this.topic(topic));
  }

  /** `outputs`: [{key: Uint8Array|null, value: Uint8Array, headers: [[n, v]], topic: string|null}]. */
  emit(outputs) {
    this.codes.push(EMIT, outputs.length);
    for (const o of outputs) {
      const placed = this.data.putRecord(o.key, o.value, o.headers);
      this.outputs.push(...placed, o.topic == null ? NONE : this.topic(o.topic));
    }
  }

  topic(name) {
    let i = this.topicIndex.get(name);
    if (i === undefined) {
      i = this.topicIndex.size;
      this.topicIndex.set(name, i);
      this.topics.push(...this.data.putText(name));
    }
    return i;
  }

  /** The packed result: header, tables with offsets made absolute, data. */
  finish() {
    const count = this.codes.length / 2;
    const outputs = this.outputs.length / 8, topics = this.topics.length / 2, failures = this.failures.length / 3;
    const base = RESULT_HEADER + count * CODE + outputs * OUTPUT + topics * TOPIC + failures * FAILURE;
    const out = new Uint8Array(base + this.data.len);
    const dv = view(out);
    out.set(MAGIC_RESULT, 0);
    [count, outputs, topics, failures, 0].forEach((v, i) => dv.setUint32(4 + 4 * i, v, true));
    let at = RESULT_HEADER;
    for (let i = 0; i < this.codes.length; i += 2, at += CODE) {
      out[at] = this.codes[i];
      dv.setUint32(at + 4, this.codes[i + 1], true);
    }
    for (let i = 0; i < this.outputs.length; i += 8, at += OUTPUT) {
      const o = this.outputs;
      dv.setUint32(at, o[i + 1] === NONE ? 0 : o[i] + base, true);
      dv.setUint32(at + 4, o[i + 1], true);
      dv.setUint32(at + 8, o[i + 2] + base, true);
      dv.setUint32(at + 12, o[i + 3], true);
      dv.setUint32(at + 16, o[i + 4] + base, true);
      dv.setUint32(at + 20, o[i + 5], true);
      dv.setUint32(at + 24, o[i + 6], true);
      dv.setUint32(at + 28, o[i + 7], true);
    }
    for (let i = 0; i < this.topics.length; i += 2, at += TOPIC) {
      dv.setUint32(at, this.topics[i] + base, true);
      dv.setUint32(at + 4, this.topics[i + 1], true);
    }
    for (let i = 0; i < this.failures.length; i += 3, at += FAILURE) {
      dv.setUint32(at, this.failures[i] + base, true);
      dv.setUint32(at + 4, this.failures[i + 1], true);
      dv.setUint32(at + 8, this.failures[i + 2], true);
    }
    out.set(this.data.buf.subarray(0, this.data.len), base);
    this.reset();
    return out;
  }
}

/** Pack a batch the way the host does: `messages` are {offset, timestampMs, partition, key, value, headers}. */
export function writeBatch(topic, messages) {
  const data = new Data();
  const placed = messages.map((m) => data.putRecord(m.key ?? null, m.value, m.headers ?? []));
  const [topicOff, topicLen] = data.putText(topic);
  const base = BATCH_HEADER + messages.length * ENTRY;
  const out = new Uint8Array(base + data.len);
  const dv = view(out);
  out.set(MAGIC_BATCH, 0);
  dv.setUint32(4, messages.length, true);
  dv.setUint32(8, topicOff + base, true);
  dv.setUint32(12, topicLen, true);
  messages.forEach((m, i) => {
    const e = BATCH_HEADER + i * ENTRY;
    const p = placed[i];
    dv.setBigUint64(e, BigInt(m.offset ?? 0), true);
    dv.setBigUint64(e + 8, BigInt(m.timestampMs ?? 0), true);
    dv.setUint32(e + 16, m.partition ?? 0, true);
    dv.setUint32(e + 20, p[1] === NONE ? 0 : p[0] + base, true);
    dv.setUint32(e + 24, p[1], true);
    dv.setUint32(e + 28, p[2] + base, true);
    dv.setUint32(e + 32, p[3], true);
    dv.setUint32(e + 36, p[4] + base, true);
    dv.setUint32(e + 40, p[5], true);
    dv.setUint32(e + 44, p[6], true);
  });
  out.set(data.buf.subarray(0, data.len), base);
  return out;
}

/**
 * Read a packed result as the host does, validating every count, index, range and string:
 * [{kind: 'keep'|'drop'|'forward'|'fail'|'emit', ...}], one per input.
 */
export function readResult(buf, inputs) {
  if (!magic(buf, MAGIC_RESULT)) throw new PackError('not a packed result (magic)');
  const dv = view(buf);
  const [count, outputs, topics, failures] = [4, 8, 12, 16].map((at) => u32(dv, at));
  if (count !== inputs) throw new PackError(`${count} outcomes for a batch of ${inputs} messages`);
  const outputsAt = table(dv, RESULT_HEADER, count, CODE, 'codes');
  const topicsAt = table(dv, outputsAt, outputs, OUTPUT, 'outputs');
  const failuresAt = table(dv, topicsAt, topics, TOPIC, 'topics');
  table(dv, failuresAt, failures, FAILURE, 'failures');
  const str = (off, len, what) => {
    range(dv, off, len, what);
    try {
      return text(buf.subarray(off, off + len));
    } catch {
      throw new PackError(`${what} is not UTF-8`);
    }
  };
  const topicNames = [];
  for (let t = 0; t < topics; t++) {
    const at = topicsAt + t * TOPIC;
    topicNames.push(str(dv.getUint32(at, true), dv.getUint32(at + 4, true), 'a topic name'));
  }
  const readOutput = (o) => {
    const at = outputsAt + o * OUTPUT;
    const f = (n) => dv.getUint32(at + 4 * n, true);
    let key = null;
    if (f(1) !== NONE) {
      range(dv, f(0), f(1), 'an output key');
      key = buf.slice(f(0), f(0) + f(1));
    }
    range(dv, f(2), f(3), 'an output value');
    checkHeaders(dv, f(4), f(5), f(6));
    let headers;
    try {
      headers = readHeaders(buf, dv, f(4), f(6));
    } catch {
      throw new PackError('a header is not UTF-8');
    }
    const t = f(7);
    if (t !== NONE && t >= topics) throw new PackError(`output ${o} names topic ${t} of ${topics}`);
    return { key, value: buf.slice(f(2), f(2) + f(3)), headers, topic: t === NONE ? null : topicNames[t] };
  };
  const result = [];
  let next = 0;
  for (let i = 0; i < count; i++) {
    const at = RESULT_HEADER + i * CODE;
    const arg = dv.getUint32(at + 4, true);
    switch (buf[at]) {
      case KEEP: result.push({ kind: 'keep' }); break;
      case DROP: result.push({ kind: 'drop' }); break;
      case FORWARD:
        if (arg >= topics) throw new PackError(`topic ${arg} of ${topics}`);
        result.push({ kind: 'forward', topic: topicNames[arg] });
        break;
      case FAIL: {
        if (arg >= failures) throw new PackError(`failure ${arg} of ${failures}`);
        const f = failuresAt + arg * FAILURE;
        const message = str(dv.getUint32(f, true), dv.getUint32(f + 4, true), 'a failure message');
        result.push({ kind: 'fail', message, retryable: dv.getUint32(f + 8, true) !== 0 });
        break;
      }
      case EMIT: {
        if (next + arg > outputs) throw new PackError(`codes emit more outputs than the table's ${outputs}`);
        const outs = [];
        for (let k = 0; k < arg; k++) outs.push(readOutput(next++));
        result.push({ kind: 'emit', outputs: outs });
        break;
      }
      default:
        throw new PackError(`unknown outcome kind ${buf[at]} for input ${i}`);
    }
  }
  if (next !== outputs) throw new PackError(`codes emit ${next} outputs, the table holds ${outputs}`);
  return result;
}

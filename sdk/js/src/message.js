// Messages in, outputs out: a Message reads its batch in place; an Output inherits what it does not set.
import { Fatal } from './errors.js';
import { NONE, bytes, isBytes, readHeaders, text } from './codec.js';
import { compact } from './json.js';

/** Well-known header names: one spelling for metadata every pattern shares. */
export const headers = Object.freeze({
  TYPE: 'weir-type',
  PRIORITY: 'weir-priority',
  CORRELATION_ID: 'weir-correlation-id',
  REPLY_TO: 'weir-reply-to',
  IDEMPOTENCY_KEY: 'weir-idempotency-key',
  TRACEPARENT: 'traceparent',
  DELIVERY_COUNT: 'weir-delivery-count',
  ROUTING_KEY: 'weir-routing-key',
  EXCHANGE: 'weir-exchange',
  DLQ_ERROR: 'weir-dlq-error',
  DLQ_PREFIX: 'weir-dlq-',
});

/** Header pairs from a Map, a plain object or an array of [name, value] pairs. */
export function headerPairs(h) {
  if (h == null) return [];
  const pairs = Array.isArray(h) ? h : h instanceof Map ? [...h] : Object.entries(h);
  return pairs.map(([n, v]) => [String(n), String(v)]);
}

const PACKED = Symbol('packed');

/** A key as bytes: text or bytes only, so a bad key fails its message instead of the batch. */
function keyBytes(k) {
  if (k == null) return null;
  if (typeof k === 'string') return bytes(k);
  if (isBytes(k)) return k;
  throw new TypeError(`a key must be a string or a Uint8Array, got ${typeof k}`);
}

/** One input message. Built by the SDK from a packed batch, or by hand (`new Message(value, opts)`) in tests. */
export class Message {
  #buf = null; #dv = null; #at = 0; #batch = null;
  #value; #key; #headers; #map; #ts; #partition; #offset; #topic;

  constructor(value = new Uint8Array(0), opts = {}, i = 0) {
    if (value === PACKED) {
      // Read from the batch on demand: most plugins look at a few fields of each message.
      this.#batch = opts;
      this.#buf = opts.buf;
      this.#dv = opts.dv;
      this.#at = opts.entry(i);
      return;
    }
    const { key = null, headers: h = [], timestampMs = 0, partition = 0, offset = 0, topic = '' } = opts;
    this.#value = toBytes(value);
    this.#key = keyBytes(key);
    this.#headers = headerPairs(h);
    this.#ts = timestampMs;
    this.#partition = partition;
    this.#offset = offset;
    this.#topic = topic;
  }

  /** Message `i` of a validated batch, read lazily in place. */
  static packed(batch, i) {
    return new Message(PACKED, batch, i);
  }

  #u32(n) {
    return this.#dv.getUint32(this.#at + n, true);
  }

  /** The payload bytes (a view into the batch: copy it to keep it beyond this call). */
  get value() {
    if (this.#value === undefined) {
      const off = this.#u32(28);
      this.#value = this.#buf.subarray(off, off + this.#u32(32));
    }
    return this.#value;
  }

  /** The partitioning key's bytes, or null. */
  get keyBytes() {
    if (this.#key === undefined) {
      const len = this.#u32(24);
      this.#key = len === NONE ? null : this.#buf.subarray(this.#u32(20), this.#u32(20) + len);
    }
    return this.#key;
  }

  /** The key as UTF-8 text, or null when absent or not UTF-8. */
  get key() {
    const k = this.keyBytes;
    if (k === null) return null;
    try {
      return text(k);
    } catch {
      return null;
    }
  }

  /** All headers as [name, value] pairs, in order (decoded on first access). */
  headerList() {
    if (this.#headers === undefined) this.#headers = readHeaders(this.#buf, this.#dv, this.#u32(36), this.#u32(44));
    return this.#headers;
  }

  /** Headers as a Map; for a repeated name the first value wins, as with `header()`. */
  get headers() {
    if (this.#map === undefined) {
      this.#map = new Map();
      for (const [n, v] of this.headerList()) if (!this.#map.has(n)) this.#map.set(n, v);
    }
    return this.#map;
  }

  /** The first header named `name`, or undefined. */
  header(name) {
    for (const [n, v] of this.headerList()) if (n === name) return v;
    return undefined;
  }

  /** Append time in the source partition, ms since the epoch. */
  get timestampMs() {
    return this.#ts ?? Number(this.#dv.getBigUint64(this.#at + 8, true));
  }

  get partition() {
    return this.#partition ?? this.#u32(16);
  }

  get offset() {
    return this.#offset ?? Number(this.#dv.getBigUint64(this.#at, true));
  }

  /** The pipeline's source topic. */
  get topic() {
    return this.#topic ?? this.#batch.topic;
  }

  /** The payload as UTF-8 text; not UTF-8 is the message's fault (fatal). */
  text() {
    try {
      return text(this.value);
    } catch {
      throw new Fatal('payload is not UTF-8');
    }
  }

  /** The payload parsed as JSON; a parse failure is fatal. */
  json() {
    const t = this.text();
    try {
      return JSON.parse(t);
    } catch (e) {
      throw new Fatal(`invalid JSON payload: ${e.message}`);
    }
  }

  get type() {
    return this.header(headers.TYPE);
  }

  get correlationId() {
    return this.header(headers.CORRELATION_ID);
  }

  get replyTo() {
    return this.header(headers.REPLY_TO);
  }

  get idempotencyKey() {
    return this.header(headers.IDEMPOTENCY_KEY);
  }
}

/** Payload bytes of a value: bytes as is, text as UTF-8, anything else as JSON. */
export function toBytes(value) {
  if (isBytes(value)) return value;
  if (typeof value === 'string') return bytes(value);
  if (Object.prototype.toString.call(value) === '[object ArrayBuffer]') return new Uint8Array(value);
  if (value === undefined) throw new TypeError('a payload cannot be undefined');
  const text = compact(value);
  if (text === undefined) throw new TypeError(`a payload cannot be ${typeof value}`);
  return bytes(text);
}

/**
 * A message a plugin emits. `key` and `headers` left undefined are inherited from the input;
 * `key: null` or `headers: {}` clear them. `to` routes it to a topic instead of the next step.
 */
export class Output {
  constructor(value, { key, headers: h, to = null } = {}) {
    this.value = toBytes(value);
    this.key = key === undefined ? undefined : keyBytes(key);
    this.headers = h === undefined ? undefined : headerPairs(h);
    this.extra = [];
    this.topic = topicOrNull(to);
  }

  /** An output carrying a message on (its key, payload and headers). */
  static from(msg) {
    return new Output(msg.value, { key: msg.keyBytes, headers: msg.headerList() });
  }

  /** Add a header (after the inherited or given ones). */
  header(name, value) {
    this.extra.push([String(name), String(value)]);
    return this;
  }

  /** Route to `topic` instead of the next step. */
  to(topic) {
    this.topic = topicOrNull(topic);
    return this;
  }
}

/** A route's topic: text, or null for the next step; anything else fails its message. */
function topicOrNull(topic) {
  if (topic != null && typeof topic !== 'string') throw new TypeError(`a topic must be a string, got ${typeof topic}`);
  return topic ?? null;
}

/** `new Output(value, opts)`, shorter. */
export function output(value, opts) {
  return new Output(value, opts);
}

/** The reply to a request: to its `weir-reply-to` topic, carrying its correlation id. */
export function reply(request, value) {
  const to = request.replyTo, id = request.correlationId;
  if (to === undefined || id === undefined) {
    throw new Fatal('the message carries no weir-reply-to and weir-correlation-id headers to reply to');
  }
  return new Output(value, { key: null, headers: [[headers.CORRELATION_ID, id]], to });
}

/** Any returned value as an output: Output as is, a Message carried on, else a payload inheriting key and headers. */
export function asOutput(value) {
  if (value instanceof Output) return value;
  if (value instanceof Message) return Output.from(value);
  return new Output(value);
}

function sameBytes(a, b) {
  if (a === b) return true;
  if (a === null || b === null || a.length !== b.length) return false;
  if (a.buffer === b.buffer && a.byteOffset === b.byteOffset) return true;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function samePairs(a, b) {
  return a.length === b.length && a.every(([n, v], i) => b[i][0] === n && b[i][1] === v);
}

/**
 * The concrete output for `input` ({key, value, headers, topic}), inheriting from `meta`
 * ({keyBytes, headerList()}), and whether it is the input unchanged (then a code crosses, not bytes).
 */
export function resolve(out, meta, input) {
  const key = out.key === undefined ? meta.keyBytes : out.key;
  const inherited = out.headers === undefined;
  let h = inherited ? null : out.headers;
  if (out.extra.length) h = (h ?? meta.headerList()).concat(out.extra);
  const unchanged = input != null && sameBytes(out.value, input.value) && sameBytes(key, input.keyBytes) &&
    (h === null ? meta === input : samePairs(h, input.headerList()));
  return { key, value: out.value, headers: h ?? meta.headerList(), topic: out.topic ?? null, unchanged };
}

// Step state (keys and values as bytes or text), committed by the host atomically with the batch's outputs.
import { Fatal } from './errors.js';
import { bytes, isBytes, text } from './codec.js';

const asBytes = (v) => (typeof v === 'string' ? bytes(v) : v);
const binary = (b) => String.fromCharCode(...b);

/**
 * In-memory state with TTLs: what `state` uses outside a component (unit tests, `testing.run`).
 * TTLs run on `now` (ms), which tests move with `advance`.
 */
export class MemoryState {
  constructor(initial = {}, now = Date.now()) {
    this.now = now;
    this.map = new Map();
    const entries = initial instanceof Map ? [...initial] : Object.entries(initial);
    for (const [k, v] of entries) {
      this.set(asBytes(k), isBytes(v) || typeof v === 'string' ? asBytes(v) : bytes(JSON.stringify(v)));
    }
  }

  get(key) {
    const k = binary(asBytes(key));
    const e = this.map.get(k);
    if (e && e.expires !== undefined && e.expires <= this.now) this.map.delete(k);
    else if (e) return e.value.slice();
    return undefined;
  }

  set(key, value, ttlMs) {
    const expires = ttlMs === undefined || ttlMs === null ? undefined : this.now + Number(ttlMs);
    this.map.set(binary(asBytes(key)), { value: asBytes(value).slice(), expires });
  }

  delete(key) {
    this.map.delete(binary(asBytes(key)));
  }

  /** Move the clock on (expiring what has outlived its TTL). */
  advance(ms) {
    this.now += ms;
    return this;
  }

  /** The live keys, as text. */
  keys() {
    return [...this.map.keys()].filter((k) => this.get(Uint8Array.from(k, (c) => c.charCodeAt(0))) !== undefined)
      .map((k) => text(Uint8Array.from(k, (c) => c.charCodeAt(0))));
  }

  getText(key) {
    const v = this.get(key);
    return v === undefined ? undefined : text(v);
  }

  getJson(key) {
    const v = this.getText(key);
    return v === undefined ? undefined : JSON.parse(v);
  }

  /** Every live entry as {key: text value}. */
  toObject() {
    return Object.fromEntries(this.keys().map((k) => [k, this.getText(k)]));
  }
}

let backend = new MemoryState();

/** Where `state` reads and writes: the host's `weir:plugin/state` import, or a MemoryState. */
export function setStateBackend(b) {
  backend = b;
}

export function stateBackend() {
  return backend;
}

/** The value under `key` as bytes, or undefined (absent or expired). Sees this batch's own writes. */
export function get(key) {
  return backend.get(asBytes(key)) ?? undefined;
}

/** The value under `key` as UTF-8 text, or undefined. */
export function getText(key) {
  const v = get(key);
  return v === undefined ? undefined : text(v);
}

/** Store `value` (bytes or text) under `key`; with `ttlMs` it expires that long after the batch commits. */
export function set(key, value, { ttlMs } = {}) {
  try {
    backend.set(asBytes(key), asBytes(value), ttlMs === undefined ? undefined : BigInt(ttlMs));
  } catch (e) {
    // Retrying the same write cannot fit it under the limit: fatal.
    const why = e?.payload?.val ?? e?.message ?? String(e);
    throw new Fatal(`state limit exceeded: ${why}`);
  }
}

/** Remove `key` (absent is fine). */
export function remove(key) {
  backend.delete(asBytes(key));
}

/** The value under `key` parsed as JSON, or undefined. */
export function getJson(key) {
  const t = getText(key);
  if (t === undefined) return undefined;
  try {
    return JSON.parse(t);
  } catch (e) {
    throw new Fatal(`state value is not valid JSON: ${e.message}`);
  }
}

/** Store `value` as JSON. */
export function setJson(key, value, opts) {
  set(key, JSON.stringify(value === undefined ? null : value), opts);
}

/** The `state` namespace plugins import. */
export const state = Object.freeze({ get, getText, set, delete: remove, getJson, setJson });

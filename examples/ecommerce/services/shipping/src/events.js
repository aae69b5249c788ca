// The e-commerce events as crates/events writes them: JSON keyed by the order id, typed by `weir-type`.
import { Fatal, headers, output } from '@weir/sdk';

/** An event as an output: its own key and one header, nothing inherited from the input (as Output::json(..).key(..).header(..)). */
export function event(kind, orderId, payload) {
  return output(JSON.stringify(payload), { key: orderId, headers: [[headers.TYPE, kind]] });
}

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const U64 = (1n << 64n) - 1n;

/** FNV-1a 64 over the UTF-8 bytes, low 32 bits as 8 hex digits: bit-exact with the Rust `short_hash`. */
export function shortHash(text) {
  let h = FNV_OFFSET;
  for (const b of new TextEncoder().encode(text)) h = ((h ^ BigInt(b)) * FNV_PRIME) & U64;
  return (h & 0xffffffffn).toString(16).padStart(8, '0');
}

const FIELDS = {
  InventoryUpdated: { order_id: 'string', customer: 'string', sku: 'string', qty: 'u32', remaining: 'i64' },
};

const fits = {
  string: (v) => typeof v === 'string',
  u32: (v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff,
  i64: (v) => Number.isInteger(v),
};

/** The event in `msg`, checked field by field as serde would (a bad payload is fatal). */
export function parse(kind, msg) {
  const doc = msg.json();
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Fatal(`invalid JSON payload: expected struct ${kind}`);
  for (const [field, type] of Object.entries(FIELDS[kind])) {
    if (!(field in doc)) throw new Fatal(`invalid JSON payload: missing field \`${field}\``);
    if (!fits[type](doc[field])) throw new Fatal(`invalid JSON payload: invalid type for field \`${field}\`, expected ${type}`);
  }
  return doc;
}

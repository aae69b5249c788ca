// JSON helpers: dotted paths (`customer.address.city`, `items.0.sku`) into parsed documents.

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const index = (seg) => (/^\d+$/.test(seg) ? Number(seg) : undefined);

function step(v, seg) {
  if (Array.isArray(v)) {
    const i = index(seg);
    return i !== undefined && i < v.length ? v[i] : undefined;
  }
  return isObject(v) && Object.hasOwn(v, seg) ? v[seg] : undefined;
}

/** The value at `path`, or undefined when a segment is missing. */
export function get(doc, path) {
  let v = doc;
  for (const seg of path.split('.')) {
    v = step(v, seg);
    if (v === undefined) return undefined;
  }
  return v;
}

/** Set `path` to `value`, creating objects on the way; false when a segment on the way is a scalar. */
export function set(doc, path, value) {
  const segs = path.split('.');
  const last = segs.pop();
  let cur = doc;
  for (const seg of segs) {
    if (Array.isArray(cur)) {
      const i = index(seg);
      if (i === undefined || i >= cur.length) return false;
      if (cur[i] === null) cur[i] = {};
      cur = cur[i];
    } else if (isObject(cur)) {
      if (!Object.hasOwn(cur, seg) || cur[seg] === null) cur[seg] = {};
      cur = cur[seg];
    } else {
      return false;
    }
  }
  if (Array.isArray(cur)) {
    const i = index(last);
    if (i === undefined || i >= cur.length) return false;
    cur[i] = value;
    return true;
  }
  if (!isObject(cur)) return false;
  cur[last] = value;
  return true;
}

/** Remove and return the value at `path` (undefined if absent). */
export function remove(doc, path) {
  const dot = path.lastIndexOf('.');
  const parent = dot < 0 ? doc : get(doc, path.slice(0, dot));
  const last = path.slice(dot + 1);
  if (Array.isArray(parent)) {
    const i = index(last);
    return i !== undefined && i < parent.length ? parent.splice(i, 1)[0] : undefined;
  }
  if (isObject(parent) && Object.hasOwn(parent, last)) {
    const v = parent[last];
    delete parent[last];
    return v;
  }
  return undefined;
}

/** A config value as JSON: valid JSON text as such (`42`, `true`, `{"a":1}`), anything else as a string. */
export function parseValue(raw) {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * Compact JSON with object keys sorted, byte for byte as the Rust SDK (serde_json) writes a
 * parsed document. JavaScript has one number type, so what JSON.parse made of `1234.0` or
 * `1e3` is an integer here (`1234`, `1000`) where Rust and Python keep a float (`1234.0`,
 * `1000.0`), and an integer from 10^16 up (inexact past 2^53 anyway) is written as a float
 * (`1e+16`); every other number is written as Rust writes it (`-0.0`, `1e+16`, `0.00001`).
 */
export function stringify(value) {
  return write(value, true, new Set());
}

/** Compact JSON with keys in the object's own order, numbers as `stringify` writes them. */
export function compact(value) {
  return write(value, false, new Set());
}

// UTF-16 order is code point order (Rust's and Python's) except that a surrogate, half of a
// code point above U+FFFF, must sort after every other unit.
const rank = (u) => (u >= 0xd800 && u <= 0xdfff ? u + 0x10000 : u);

function byCodePoint(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = rank(a.charCodeAt(i)) - rank(b.charCodeAt(i));
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** A number as serde_json writes it (the shortest digits that read back, in its layout). */
export function numberText(v) {
  if (!Number.isFinite(v)) return 'null'; // as JSON.stringify and serde_json write NaN
  if (Object.is(v, -0)) return '-0.0';
  if (Number.isInteger(v) && Math.abs(v) < 1e16) return String(v);
  const [mantissa, exp] = Math.abs(v).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const kk = Number(exp) + 1; // where the decimal point falls after the first digit
  const n = digits.length;
  const sign = v < 0 ? '-' : '';
  if (n <= kk && kk <= 16) return `${sign}${digits}${'0'.repeat(kk - n)}.0`;
  if (kk > 0 && kk <= 16) return `${sign}${digits.slice(0, kk)}.${digits.slice(kk)}`;
  if (kk > -5 && kk <= 0) return `${sign}0.${'0'.repeat(-kk)}${digits}`;
  return `${sign}${n === 1 ? digits : `${digits[0]}.${digits.slice(1)}`}e${kk > 0 ? '+' : '-'}${Math.abs(kk - 1)}`;
}

// JSON.stringify's rules (toJSON, boxed primitives, undefined and functions left out of
// objects and null in arrays, cycles refused), with weir's numbers and key order.
function write(v, sort, open) {
  if (v !== null && typeof v === 'object' && typeof v.toJSON === 'function') v = v.toJSON();
  if (v instanceof Number || v instanceof String || v instanceof Boolean) v = v.valueOf();
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return numberText(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      throw new TypeError('a BigInt cannot be written as JSON');
    case 'object':
      break;
    default:
      return undefined;
  }
  if (v === null) return 'null';
  if (open.has(v)) throw new TypeError('cannot write a cyclic structure as JSON');
  open.add(v);
  let text;
  if (Array.isArray(v)) {
    text = `[${v.map((item) => write(item, sort, open) ?? 'null').join(',')}]`;
  } else {
    const keys = Object.keys(v);
    if (sort) keys.sort(byCodePoint);
    const parts = [];
    for (const k of keys) {
      const item = write(v[k], sort, open);
      if (item !== undefined) parts.push(`${JSON.stringify(k)}:${item}`);
    }
    text = `{${parts.join(',')}}`;
  }
  open.delete(v);
  return text;
}

/** The text a value compares as: strings without quotes, everything else as compact JSON. */
export function asText(v) {
  return typeof v === 'string' ? v : stringify(v);
}

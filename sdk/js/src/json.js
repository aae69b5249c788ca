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

/** Compact JSON with object keys sorted, as the Rust SDK (serde_json) writes a parsed document. */
export function stringify(value) {
  return JSON.stringify(value, (_k, v) =>
    isObject(v) ? Object.fromEntries(Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map((k) => [k, v[k]])) : v);
}

/** The text a value compares as: strings without quotes, everything else as compact JSON. */
export function asText(v) {
  return typeof v === 'string' ? v : stringify(v);
}

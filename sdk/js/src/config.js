// A step's `key=value` configuration, typed on demand; every error names the key and the bad text.
import { Fatal } from './errors.js';

const RESERVED = 'weir.';

/** `500ms`, `10s`, `5m`, `24h`, `7d` in milliseconds (a bare number is milliseconds), else undefined. */
export function parseDurationMs(raw) {
  const m = /^(\d+)\s*(ms|s|m|min|h|d)?$/.exec(String(raw).trim());
  if (!m) return undefined;
  const mult = { ms: 1, s: 1000, m: 60000, min: 60000, h: 3600000, d: 86400000 }[m[2] ?? 'ms'];
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : undefined;
}

function keyMatches(key, pattern) {
  return pattern.endsWith('.') ? key.startsWith(pattern) : key === pattern;
}

/**
 * The configuration of one pipeline step. Values are text as written (`007` stays `007`); the
 * typed accessors parse only where asked. Reserved `weir.*` keys (added by the host) are kept apart.
 */
export class Config {
  #entries = new Map();
  #reserved = new Map();

  /** From [key, value] pairs (later duplicates win), a Map, or a plain object. */
  constructor(pairs = []) {
    const list = Array.isArray(pairs) ? pairs : pairs instanceof Map ? [...pairs] : Object.entries(pairs);
    for (const [k, v] of list) (k.startsWith(RESERVED) ? this.#reserved : this.#entries).set(String(k), String(v));
    // Sorted, like the Rust SDK's BTreeMap: iteration order does not depend on how the host listed them.
    this.#entries = new Map([...this.#entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }

  /** The raw text of `key`, or undefined. */
  get(key) {
    return this.#entries.get(key);
  }

  has(key) {
    return this.#entries.has(key);
  }

  /** The raw text of `key`, or an error naming the missing key. */
  require(key) {
    const v = this.#entries.get(key);
    if (v === undefined) throw new Fatal(`missing config key \`${key}\``);
    return v;
  }

  #typed(key, opts, parse, what) {
    const raw = this.#entries.get(key);
    if (raw === undefined) {
      if (opts.required) this.require(key);
      return opts.default;
    }
    const v = parse(raw);
    if (v === undefined) throw new Fatal(`config key \`${key}\` is not ${what}: '${raw}'`);
    return v;
  }

  /** Text as written: digits stay text. */
  string(key, opts = {}) {
    return this.#typed(key, opts, (raw) => raw, 'text');
  }

  /** A safe integer. */
  int(key, opts = {}) {
    return this.#typed(key, opts, (raw) => {
      const t = raw.trim();
      return /^[+-]?\d+$/.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : undefined;
    }, 'an integer');
  }

  /** A finite number. */
  number(key, opts = {}) {
    return this.#typed(key, opts, (raw) => {
      const n = raw.trim() === '' ? NaN : Number(raw);
      return Number.isFinite(n) ? n : undefined;
    }, 'a number');
  }

  /** `true` or `false`. */
  bool(key, opts = {}) {
    return this.#typed(key, opts, (raw) => ({ true: true, false: false })[raw.trim()], 'a boolean (true or false)');
  }

  /** A duration in milliseconds: `500ms`, `10s`, `5m`, `24h`, `7d`. */
  durationMs(key, opts = {}) {
    return this.#typed(key, opts, parseDurationMs, 'a duration (e.g. 500ms, 10s, 5m, 24h, 7d)');
  }

  /** A list: `a, b` or a JSON array. */
  list(key, opts = {}) {
    return this.#typed(key, opts, (raw) => {
      if (raw.trim().startsWith('[')) {
        try {
          const v = JSON.parse(raw);
          return Array.isArray(v) ? v.map(String) : undefined;
        } catch {
          return undefined;
        }
      }
      return raw.trim() === '' ? [] : raw.split(',').map((s) => s.trim());
    }, 'a list (a,b or ["a","b"])');
  }

  /** Every key starting with `prefix`, prefix removed, as [rest, value] pairs in key order. */
  withPrefix(prefix) {
    return [...this.#entries].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]);
  }

  /** The step's own [key, value] pairs, in key order. */
  entries() {
    return [...this.#entries];
  }

  /** Fail naming the first key not in `known` (a name, or a prefix ending in `.`), so a typo does not pass silently. */
  rejectUnknown(known) {
    for (const k of this.#entries.keys()) {
      if (!known.some((p) => keyMatches(k, p))) {
        throw new Fatal(`unknown config key \`${k}\` (known keys: ${known.join(', ')})`);
      }
    }
    return this;
  }

  /** A reserved key set by the host: `pipeline`, `step`, `plugin` or `version`. */
  reserved(name) {
    return this.#reserved.get(RESERVED + name);
  }

  /** The running version of this plugin (undefined outside a server). */
  get version() {
    const v = this.reserved('version');
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  }

  /** Replace `${weir.pipeline}`, `${weir.step}`, `${weir.plugin}`, `${weir.version}` with the reserved values (unknown ones stay). */
  expand(text) {
    let out = String(text);
    for (const [k, v] of this.#reserved) out = out.split('${' + k + '}').join(v);
    return out;
  }
}

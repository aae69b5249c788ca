// The shapes a plugin can take; each is a definition the component (or `testing`) runs per message.
import { Fatal } from './errors.js';
import { Message, Output, asOutput, resolve } from './message.js';
import { drop, emit, forward, keep, notAsync, toOutcome } from './outcome.js';
import { asText, get as getPath } from './json.js';
import * as st from './state.js';

export const PLUGIN = Symbol('weir.plugin');

/**
 * A kind's definition: `create(config)` builds the instance, whose `process(msg)` returns an
 * outcome. `self` is what `init(config)` returned (the Config itself when there is no `init`).
 */
function define(kind, def, method, adapt) {
  if (typeof def === 'function') def = { [method]: def };
  if (def == null || typeof def[method] !== 'function') throw new TypeError(`${kind}() needs a function \`${method}\``);
  return {
    [PLUGIN]: true,
    kind,
    create(config) {
      const self = def.init ? notAsync(def.init(config), 'init') ?? config : config;
      return adapt(def, self, config);
    },
  };
}

const call = (what, f, ...args) => notAsync(f(...args), what);

/** Keep (truthy) or drop each message, unchanged. */
export function filter(def) {
  return define('filter', def, 'filter', (d, self) => ({
    process: (msg) => (call('filter', d.filter, msg, self) ? keep() : drop()),
  }));
}

/** Exactly one output per input: an Output, bytes, text, or a value sent as JSON. */
export function map(def) {
  return define('map', def, 'map', (d, self) => ({
    process(msg) {
      const out = call('map', d.map, msg, self);
      if (out === undefined) throw new TypeError('map returned nothing (return null for a JSON null)');
      return emit(out);
    },
  }));
}

/** One output, or none (null/undefined drops the input). */
export function filterMap(def) {
  return define('filterMap', def, 'filterMap', (d, self) => ({
    process(msg) {
      const out = call('filterMap', d.filterMap, msg, self);
      return out == null ? drop() : emit(out);
    },
  }));
}

/** Zero or more outputs: any iterable of outputs. */
export function flatMap(def) {
  return define('flatMap', def, 'flatMap', (d, self) => ({
    process: (msg) => emit(...(call('flatMap', d.flatMap, msg, self) ?? [])),
  }));
}

/** The message, unchanged, to the returned topic; null/undefined passes it on. */
export function route(def) {
  return define('route', def, 'route', (d, self) => ({
    process(msg) {
      const topic = call('route', d.route, msg, self);
      return topic == null || topic === false ? keep() : forward(topic);
    },
  }));
}

/** The general form: return keep(), drop(), emit(...), forward(topic), fail(...), or outputs. */
export function plugin(def) {
  return define('plugin', def, 'process', (d, self) => ({
    process: (msg) => toOutcome(d.process(msg, self)),
  }));
}

const DAY_MS = 86_400_000;

/** Handle each message key once within the window. */
export const byKey = ({ windowMs = DAY_MS } = {}) => ({ by: 'key', windowMs });
/** Handle each value of header `name` once within the window. */
export const byHeader = (name, { windowMs = DAY_MS } = {}) => ({ by: 'header', name, windowMs });
/** Handle each value of the JSON field at `path` once within the window. */
export const byField = (path, { windowMs = DAY_MS } = {}) => ({ by: 'field', path, windowMs });

/** Parse `key`, `header:NAME` or `field:PATH` from config (`what` names the key in errors). */
export function selector(what, spec, opts) {
  const i = spec.indexOf(':');
  if (spec === 'key') return byKey(opts);
  if (i > 0 && spec.slice(0, i) === 'header' && i + 1 < spec.length) return byHeader(spec.slice(i + 1), opts);
  if (i > 0 && spec.slice(0, i) === 'field' && i + 1 < spec.length) return byField(spec.slice(i + 1), opts);
  throw new Fatal(`config key \`${what}\` has invalid value '${spec}': use key, header:NAME or field:PATH`);
}

/** The selected text of `msg`, or undefined when it has none. */
export function select(sel, msg) {
  if (sel.by === 'key') return msg.key ?? undefined;
  if (sel.by === 'header') return msg.header(sel.name);
  const v = getPath(msg.json(), sel.path);
  return v === undefined || v === null ? undefined : asText(v);
}

const IDEMPOTENCY_PREFIX = 'idem:';

/**
 * An event handler: zero or more outputs per input (an array; one value is one output; null none),
 * with state at hand and, given `idempotency`, each id handled once within its window.
 */
export function handler(def) {
  return define('handler', def, 'handle', (d, self) => {
    const idem = typeof d.idempotency === 'function' ? d.idempotency(self) : d.idempotency;
    return {
      process(msg) {
        const id = idem ? select(idem, msg) : undefined;
        const slot = id === undefined ? undefined : IDEMPOTENCY_PREFIX + id;
        if (slot !== undefined && st.get(slot) !== undefined) return drop();
        const outs = call('handle', d.handle, msg, self);
        const outcome = emit(...(outs == null ? [] : Array.isArray(outs) ? outs : [outs]));
        // Remembered only on success: a failed attempt may be retried.
        if (slot !== undefined) st.set(slot, '1', { ttlMs: idem.windowMs });
        return outcome;
      },
    };
  });
}

const AGG_WINDOW = 'agg.window';
const AGG_KEYS = 'agg.keys';
const AGG_LATE = 'agg.late';
const accKey = (key) => `agg.acc:${key}`;

/**
 * Per-key tumbling windows: `add(acc, msg, self)` returns the new accumulator (undefined the first
 * time, or `initial`); when a later window's first input arrives, `emit(key, window, acc, self)`
 * runs for every key of the closed one. Inputs older than the open window are dropped and counted.
 * State layout as the Rust SDK's, so the two read each other's state.
 */
export function aggregate(def) {
  for (const f of ['key', 'add', 'emit']) if (typeof def?.[f] !== 'function') throw new TypeError(`aggregate() needs a function \`${f}\``);
  return define('aggregate', def, 'add', (d, self) => {
    const len = typeof d.windowMs === 'function' ? d.windowMs(self) : d.windowMs;
    if (!(len > 0)) throw new Fatal("the aggregate's window must be longer than 0");
    const initial = () => (typeof d.initial === 'function' ? d.initial() : d.initial === undefined ? undefined : structuredClone(d.initial));
    const close = (start) => {
      const window = { startMs: start, endMs: start + len };
      const outs = [];
      for (const key of st.getJson(AGG_KEYS) ?? []) {
        const raw = st.getJson(accKey(key));
        st.remove(accKey(key));
        // Keyed by the aggregate's key, with no headers: they belonged to the inputs.
        const meta = new Message(new Uint8Array(0), { key });
        const out = asOutput(call('emit', d.emit, key, window, raw === undefined ? initial() : raw, self));
        const r = resolve(out, meta, null);
        outs.push(new Output(r.value, { key: r.key, headers: r.headers, to: r.topic }));
      }
      st.remove(AGG_KEYS);
      return outs;
    };
    return {
      process(msg) {
        const time = d.time ? call('time', d.time, msg, self) : msg.timestampMs;
        const window = time - (time % len);
        const key = String(call('key', d.key, msg, self));
        const open = st.getJson(AGG_WINDOW);
        let outputs = [];
        if (open != null && window < open) {
          st.setJson(AGG_LATE, (st.getJson(AGG_LATE) ?? 0) + 1);
          return drop();
        }
        if (open != null && window > open) outputs = close(open);
        st.setJson(AGG_WINDOW, window);
        const slot = accKey(key);
        let acc;
        if (st.get(slot) === undefined) {
          st.setJson(AGG_KEYS, [...(st.getJson(AGG_KEYS) ?? []), key]);
          acc = initial();
        } else {
          acc = st.getJson(slot);
        }
        // `add` may return the new accumulator or change `acc` in place (returning nothing).
        const next = call('add', d.add, acc, msg, self);
        st.setJson(slot, next === undefined ? acc : next);
        return outputs.length ? emit(...outputs) : drop();
      },
    };
  });
}

/** A definition as a plugin: a kind's result as is, or `{init, process}` taken as `plugin(...)`. */
export function asPlugin(def) {
  if (def?.[PLUGIN]) return def;
  if (def && typeof def.process === 'function') return plugin(def);
  throw new TypeError('the default export must be a weir plugin: filter(...), map(...), ..., or plugin({ init, process })');
}

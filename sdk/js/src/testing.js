// Run a plugin without a server, through the same packed codec as the component: encode a batch, decode the result.
import { Fatal } from './errors.js';
import { component } from './component.js';
import { readResult, text, writeBatch } from './codec.js';
import { Message, toBytes } from './message.js';
import { MemoryState } from './state.js';
import { captureLogs, setLogSink } from './log.js';

/** A test input with metadata: `message(value, {key, headers, timestampMs, partition, offset})`. */
export function message(value, opts = {}) {
  return new Message(value, opts);
}

/** An emitted output as a test sees it. */
class TestOutput {
  constructor({ key, value, headers, topic }) {
    this.keyBytes = key;
    this.key = key === null ? null : text(key);
    this.value = value;
    this.headerList = headers;
    this.headers = Object.fromEntries([...headers].reverse());
    this.topic = topic;
  }

  text() {
    return text(this.value);
  }

  json() {
    return JSON.parse(this.text());
  }

  header(name) {
    return this.headerList.find(([n]) => n === name)?.[1];
  }
}

function configPairs(config) {
  const list = Array.isArray(config) ? config : config instanceof Map ? [...config] : Object.entries(config);
  return list.map(([k, v]) => [String(k), String(v)]);
}

/**
 * A plugin instance kept across runs (state, windows and idempotency carry over):
 * `instance(definition, {config, state, now})` → {run(inputs), state, logs}. An `init` error throws
 * a Fatal with its text; `abort` throws the Abort sentinel (in a component it traps).
 */
export function instance(definition, { config = {}, state, now, topic = 'local-test' } = {}) {
  const memory = state instanceof MemoryState ? state : new MemoryState(state ?? {}, now ?? Date.now());
  const logs = [];
  setLogSink(null);
  const c = component(definition, { state: memory });
  let offset = 0;
  const scoped = (f) => {
    captureLogs(logs);
    try {
      return f();
    } finally {
      captureLogs(null);
    }
  };
  scoped(() => {
    try {
      c.init(configPairs(config));
    } catch (e) {
      throw typeof e === 'string' ? new Fatal(e) : e;
    }
  });
  return {
    state: memory,
    logs,
    /** Inputs: text, bytes, `message(...)`, or any other value as a JSON payload. Returns one outcome each. */
    run(inputs) {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      const packed = list.map((m) => {
        const msg = m instanceof Message ? m : new Message(toBytes(m), { timestampMs: memory.now });
        return {
          offset: m instanceof Message && m.offset ? m.offset : offset++,
          timestampMs: msg.timestampMs,
          partition: msg.partition,
          key: msg.keyBytes,
          value: msg.value,
          headers: msg.headerList(),
        };
      });
      const result = scoped(() => c.process(writeBatch(topic, packed)));
      return readResult(result, list.length).map((o) =>
        o.kind === 'emit' ? { ...o, outputs: o.outputs.map((x) => new TestOutput(x)) } : o);
    },
  };
}

/** Run `definition` once over `inputs`: the outcomes, with `.state` (a MemoryState) and `.logs` attached. */
export function run(definition, inputs, opts = {}) {
  const inst = instance(definition, opts);
  const outcomes = inst.run(inputs);
  return Object.assign(outcomes, { state: inst.state, logs: inst.logs });
}

export { MemoryState };

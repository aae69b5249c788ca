// What becomes of one input: keep, drop, emit outputs, forward to a topic, or fail.
import { Fatal } from './errors.js';
import { Output, asOutput } from './message.js';

const OUTCOME = Symbol('weir.outcome');

const KEEP = Object.freeze({ [OUTCOME]: true, kind: 'keep' });
const DROP = Object.freeze({ [OUTCOME]: true, kind: 'drop' });

/** The input passes on unchanged (nothing crosses back but a code). */
export const keep = () => KEEP;

/** Filtered out on purpose. */
export const drop = () => DROP;

/** Zero or more outputs, one per argument: Outputs, Messages, bytes, text, or values sent as
 * JSON (an array argument is one JSON array, as in Python and Rust; spread it for several). */
export function emit(...outputs) {
  return { [OUTCOME]: true, kind: 'emit', outputs: outputs.map(asOutput) };
}

/** The input, unchanged, to `topic`. */
export function forward(topic) {
  return { [OUTCOME]: true, kind: 'forward', topic: topicName(topic) };
}

/** A topic name must be text: a number or an object is a mistake, not a name. */
function topicName(topic) {
  if (typeof topic !== 'string') throw new TypeError(`a topic must be a string, got ${typeof topic}`);
  return topic;
}

/** This message failed; `retryable` asks the failure policy to try again later. */
export function fail(message, { retryable = false } = {}) {
  return { [OUTCOME]: true, kind: 'fail', message: String(message), retryable };
}

export function isOutcome(v) {
  return v != null && v[OUTCOME] === true;
}

/** User code must answer synchronously: a component has no event loop to settle a promise. */
export function notAsync(v, what) {
  if (v != null && typeof v.then === 'function') {
    throw new Fatal(`${what} returned a Promise: weir plugins are synchronous (drop async/await)`);
  }
  return v;
}

/** A plugin's return value as an outcome: an outcome, a list of outputs, or one output. */
export function toOutcome(v) {
  notAsync(v, 'process');
  if (isOutcome(v)) return v;
  if (v === undefined) throw new TypeError('process returned nothing: return keep(), drop(), emit(...), forward(topic) or fail(...)');
  if (Array.isArray(v)) return emit(...v);
  return emit(v instanceof Output ? v : asOutput(v));
}

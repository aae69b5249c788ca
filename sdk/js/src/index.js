// @weir/sdk: write weir stream-processing plugins in JavaScript; `weir plugin build` makes them components.
export { Message, Output, output, reply, headers } from './message.js';
export { keep, drop, emit, forward, fail } from './outcome.js';
export { Config, parseDurationMs } from './config.js';
export { WeirError, Retryable, Fatal, Abort, abort } from './errors.js';
export { state, MemoryState } from './state.js';
export { log } from './log.js';
export { filter, map, filterMap, flatMap, route, handler, aggregate, plugin, byKey, byHeader, byField, selector, select } from './kinds.js';
export { component } from './component.js';
export * as json from './json.js';
export * as schemas from './schemas.js';
export * as testing from './testing.js';
export * as codec from './codec.js';

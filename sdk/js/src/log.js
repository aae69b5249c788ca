// Logging through the host's tracing output; outside a component, lines go to a capture list or stderr.

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

let sink = null;
let capture = null;

/** Route lines to the host's `weir:plugin/log` import (`write(level, message)`), or back to the default with null. */
export function setLogSink(s) {
  sink = s;
}

/** Collect lines into `list` ({level, message}) instead of stderr, e.g. in `testing.run`; null stops. */
export function captureLogs(list) {
  capture = list;
}

function line(args) {
  return args.map((a) => (typeof a === 'string' ? a : a instanceof Error ? `${a.name}: ${a.message}` : JSON.stringify(a))).join(' ');
}

function writer(level) {
  return (...args) => {
    const message = line(args);
    if (sink) sink.write(level, message);
    else if (capture) capture.push({ level, message });
    else console.error(`[${level}] ${message}`);
  };
}

/** `log.info('seen', n)`: arguments joined by spaces, non-text as JSON. */
export const log = Object.freeze(Object.fromEntries(LEVELS.map((l) => [l, writer(l)])));

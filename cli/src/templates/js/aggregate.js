// A weir aggregate: counts messages per key in tumbling windows (`window`, default one minute), reported as `TAG/KEY: N in [start, end)`.
import { aggregate } from '@weir/sdk';

export default aggregate({
  init: (config) => ({
    windowMs: config.durationMs('window', { default: 60_000 }),
    tag: config.string('tag', { default: 'count' }),
  }),

  // The window can depend on the config: a function of what `init` returned.
  windowMs: ({ windowMs }) => windowMs,

  key: (msg) => msg.key ?? '(none)',

  // The accumulator lives in state as JSON, so it survives restarts; it starts undefined.
  add: (count = 0) => count + 1,

  // Called for each key when a later window's first message closes this one.
  emit: (key, window, count, { tag }) => `${tag}/${key}: ${count} in [${window.startMs}, ${window.endMs})`,
});

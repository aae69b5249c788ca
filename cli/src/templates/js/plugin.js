// A weir plugin in the general form: upper-cases text payloads, sends empty ones to the `rejects` topic (or the one configured as `rejects`).
import { emit, forward, plugin } from '@weir/sdk';

export default plugin({
  init: (config) => ({ rejects: config.string('rejects', { default: 'rejects' }) }),

  // Each input becomes an outcome: keep(), drop(), emit(...outputs), forward(topic) or fail(...).
  process: (msg, { rejects }) => {
    const text = msg.text().toUpperCase();
    if (text === '') return forward(rejects);
    // A string output keeps the input's key and headers.
    return emit(text);
  },
});

// A weir flat-map: one output per word of the payload, split on `separator` (any whitespace when unset).
import { flatMap } from '@weir/sdk';

export default flatMap({
  init: (config) => ({ separator: config.string('separator', { default: '' }) }),

  // Each string comes out as a text payload keeping the input's key and headers.
  flatMap: (msg, { separator }) => {
    const text = msg.text();
    return separator === '' ? text.split(/\s+/).filter(Boolean) : text.split(separator).filter(Boolean);
  },
});

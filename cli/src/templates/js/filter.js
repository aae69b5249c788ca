// A weir filter: keeps messages whose JSON `field` equals `value` (both from the config).
import { filter, json } from '@weir/sdk';

export default filter({
  // Runs once per pipeline step; a missing key fails the deploy, naming it.
  init: (config) => ({ field: config.require('field'), value: config.require('value') }),

  // Numbers and booleans in the message compare by their text: `value=1` matches {"a":1}.
  filter: (msg, { field, value }) => {
    const found = json.get(msg.json(), field);
    return found !== undefined && json.asText(found) === value;
  },
});

// A weir filter-map: reads `SENSOR VALUE` lines and keeps the number of the configured `sensor` (every sensor when unset).
import { filterMap } from '@weir/sdk';

export default filterMap({
  // Sensor names stay text: sensor=0042 must not become 42.
  init: (config) => ({ sensor: config.string('sensor') }),

  // null drops the line; a number comes out as JSON.
  filterMap: (msg, { sensor }) => {
    const line = msg.text().trim();
    const space = line.indexOf(' ');
    const [name, value] = space < 0 ? ['', line] : [line.slice(0, space), line.slice(space + 1).trim()];
    if (sensor !== undefined && sensor !== name) return null;
    const n = Number(value);
    return value === '' || Number.isNaN(n) ? null : n;
  },
});

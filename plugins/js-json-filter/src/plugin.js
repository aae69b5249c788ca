// js-json-filter: keeps JSON messages whose `field` compares to a configured value (same config and behaviour as plugins/json-filter).
import { Fatal, filter, json } from '@weir/sdk';

const OPS = { eq: 'Eq', ne: 'Ne', exists: 'Exists', missing: 'Missing', gt: 'Gt', lt: 'Lt', contains: 'Contains' };
// What Rust's f64 parser accepts, so `equals` is refused exactly where the Rust plugin refuses it.
const RUST_F64 = /^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf|infinity|nan)$/i;
// Error texts quote values as Rust's `{:?}` does.
const quote = (s) => JSON.stringify(s);

export default filter({
  // Checked in the Rust plugin's order, so the same bad config reports the same key.
  init(config) {
    config.rejectUnknown(['field', 'equals', 'op', 'on-invalid']);
    const raw = config.get('op') ?? 'eq';
    const op = OPS[raw];
    if (!op) throw new Fatal(`config key \`op\` has invalid value ${quote(raw)}: use eq, ne, exists, missing, gt, lt or contains`);
    const operand = op === 'Exists' || op === 'Missing' ? '' : config.require('equals');
    let number;
    if (op === 'Gt' || op === 'Lt') {
      if (!RUST_F64.test(operand)) throw new Fatal(`config key \`equals\` must be a number for op ${op}, got ${quote(operand)}`);
      number = Number(/^[+-]?inf/i.test(operand) ? operand.replace(/inf(inity)?/i, 'Infinity') : operand);
    }
    const onInvalid = config.get('on-invalid') ?? 'fail';
    if (onInvalid !== 'fail' && onInvalid !== 'drop') {
      throw new Fatal(`config key \`on-invalid\` has invalid value ${quote(onInvalid)}: use fail or drop`);
    }
    return { field: config.require('field'), op, operand, number, dropInvalid: onInvalid === 'drop' };
  },

  filter(msg, self) {
    let doc;
    try {
      doc = msg.json();
    } catch (e) {
      // A payload that is not JSON: dropped if asked, else the failure policy decides.
      if (self.dropInvalid) return false;
      throw e;
    }
    return matches(self, json.get(doc, self.field));
  },
});

/** Whether the field's value (undefined: absent) passes; an absent field fails every op but ne and missing. */
export function matches({ op, operand, number }, v) {
  if (op === 'Exists') return v !== undefined;
  if (op === 'Missing') return v === undefined;
  if (v === undefined) return op === 'Ne';
  switch (op) {
    case 'Eq': return json.asText(v) === operand;
    case 'Ne': return json.asText(v) !== operand;
    // Only JSON numbers compare: "150" in quotes is text.
    case 'Gt': return typeof v === 'number' && v > number;
    case 'Lt': return typeof v === 'number' && v < number;
    default: return Array.isArray(v) ? v.some((i) => json.asText(i) === operand) : json.asText(v).includes(operand);
  }
}

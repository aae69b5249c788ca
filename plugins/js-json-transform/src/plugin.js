// js-json-transform: renames, drops and sets fields of JSON messages (same config and behaviour as plugins/json-transform).
import { Fatal, map, json, output, reply } from '@weir/sdk';

// Error texts quote values as Rust's `{:?}` does.
const quote = (s) => JSON.stringify(s);

export default map({
  // Keys come in key order (as the Rust plugin's BTreeMap), so renames and sets apply in the same order.
  init(config) {
    config.rejectUnknown(['rename.', 'drop', 'set.', 'reply']);
    const renames = config.withPrefix('rename.');
    const drops = (config.get('drop') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    // `${weir.version}` etc. expand, so outputs can say which plugin version made them.
    const sets = config.withPrefix('set.').map(([path, v]) => [path, json.parseValue(config.expand(v))]);
    const empty = renames.find(([, to]) => to === '');
    if (empty) throw new Fatal(`config key \`rename.\` needs a target path, got ${quote(empty[1])}`);
    const raw = config.get('reply') ?? 'false';
    if (raw !== 'true' && raw !== 'false') {
      throw new Fatal(`config key \`reply\` has invalid value ${quote(raw)}: provided string was not \`true\` or \`false\``);
    }
    return { renames, drops, sets, reply: raw === 'true' };
  },

  map(msg, self) {
    const doc = msg.json();
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Fatal('payload is JSON but not an object');
    apply(self, doc);
    // Keys sorted and compact, byte for byte what the Rust plugin writes.
    const value = json.stringify(doc);
    // The key, headers and routing of the message are kept (unless it is a reply).
    return self.reply ? reply(msg, value) : output(value);
  },
});

/** Renames, then drops, then sets, as configured. */
export function apply({ renames, drops, sets }, doc) {
  for (const [from, to] of renames) {
    const v = json.remove(doc, from);
    if (v !== undefined && !json.set(doc, to, v)) {
      throw new Fatal(`cannot rename \`${from}\` to \`${to}\`: a parent of \`${to}\` is not an object`);
    }
  }
  for (const path of drops) json.remove(doc, path);
  for (const [path, value] of sets) {
    // A copy: the configured value is shared by every message.
    if (!json.set(doc, path, structuredClone(value))) throw new Fatal(`cannot set \`${path}\`: a parent is not an object`);
  }
}

// js-hostile: a JavaScript plugin that misbehaves on purpose, to prove the sandbox holds for componentize-js components too.
import { Fatal, abort, fail, keep, plugin } from '@weir/sdk';

// mode: what to do to a message whose value equals `trigger` (every message when unset); others pass unchanged.
const MODES = ['panic', 'loop', 'alloc', 'fail', 'fail-retryable'];

export default plugin({
  init(config) {
    for (const [key] of config.entries()) {
      if (key !== 'mode' && key !== 'trigger') throw new Fatal(`unknown config key \`${key}\``);
    }
    const mode = config.string('mode', { default: '' });
    if (mode !== '' && !MODES.includes(mode)) throw new Fatal(`config key \`mode\` has invalid value "${mode}": use ${MODES.join(', ')}`);
    const trigger = config.get('trigger');
    return { mode, trigger: trigger === undefined ? undefined : new TextEncoder().encode(trigger) };
  },

  process(msg, { mode, trigger }) {
    if (!triggered(trigger, msg.value)) return keep();
    switch (mode) {
      case 'panic': return abort(`hostile plugin panics on message at offset ${msg.offset}`);
      case 'loop': return spin();
      case 'alloc': return hoard();
      case 'fail': return fail('this message is bad');
      case 'fail-retryable': return fail('a dependency is busy', { retryable: true });
      default: return keep();
    }
  },
});

function triggered(trigger, value) {
  return trigger === undefined || (trigger.length === value.length && trigger.every((b, i) => b === value[i]));
}

/** Spins until the host's CPU budget interrupts the instance. */
function spin() {
  let x = 0;
  for (;;) x = (x + 1) | 0;
}

/** Allocates 1 MiB chunks (touched, so they are real) until the memory limit stops the instance. */
function hoard() {
  const kept = [];
  for (;;) kept.push(new Uint8Array(1 << 20).fill(1));
}

// A weir router: messages with a `priority` header of `high` go to the `urgent` topic (or the one configured as `to`); the rest pass on.
import { route } from '@weir/sdk';

export default route({
  init: (config) => ({ to: config.string('to', { default: 'urgent' }) }),

  // A topic sends the message there unchanged; null passes it on to the next step.
  route: (msg, { to }) => (msg.header('priority') === 'high' ? to : null),
});

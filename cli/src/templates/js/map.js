// A weir map: turns each order into an invoice for the configured `account`, adding `fee_cents`.
import { map } from '@weir/sdk';

export default map({
  // Config values are text; `int` parses where a number is meant, so account=007 stays "007".
  init: (config) => ({
    feeCents: config.int('fee_cents', { default: 0 }),
    account: config.string('account', { default: '' }),
  }),

  // An object comes out as JSON, keeping the input's key and headers.
  map: (msg, { feeCents, account }) => {
    const order = msg.json();
    return { order: order.id, account, amount_cents: order.total_cents + feeCents };
  },
});

// A weir handler: keeps a running balance per account in state, handling each payment once (by its idempotency header) within a day.
import { byHeader, handler, headers, log, state } from '@weir/sdk';

export default handler({
  // A repeat of a payment already handled is dropped before `handle` sees it, across batches and restarts.
  idempotency: byHeader(headers.IDEMPOTENCY_KEY, { windowMs: 86_400_000 }),

  // The currency is an ISO 4217 code, letters or digits (EUR or 978): text either way.
  init: (config) => ({ currency: config.string('currency', { default: 'EUR' }) }),

  handle: (msg, { currency }) => {
    const { account, cents } = msg.json();
    const key = `balance:${account}`;
    // State is committed with the batch's outputs: after a crash, balances and outputs agree.
    const balance = (state.getJson(key) ?? 0) + cents;
    state.setJson(key, balance);
    log.info(`${account} now holds ${balance}`);
    return [{ account, balance_cents: balance, currency }];
  },
});

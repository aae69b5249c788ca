"""A weir handler: a running balance per account in state, each payment handled once a day."""

from dataclasses import dataclass

import weir


@dataclass
class Accounts:
    # An ISO 4217 code, letters or digits (`EUR` or `978`): always text.
    currency: str = "EUR"


# A repeat of a payment's `weir-idempotency-key` within a day is dropped before the handler
# sees it; the key is remembered only once the payment was handled.
@weir.handler(config=Accounts, idempotency=weir.by_header(weir.headers.IDEMPOTENCY_KEY, window_ms=86_400_000))
def pay(payment: dict, accounts):
    key = f"balance:{payment['account']}"
    balance = weir.state.get_json(key, 0) + payment["cents"]
    weir.state.set_json(key, balance)
    weir.log.info(f"{payment['account']} now holds {balance}")
    return [{"account": payment["account"], "balance_cents": balance, "currency": accounts.currency}]

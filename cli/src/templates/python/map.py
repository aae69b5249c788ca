"""A weir map: turns each order into an invoice for the configured `account`, adding `fee_cents`."""

from dataclasses import dataclass

import weir


@dataclass
class Order:
    id: int
    total_cents: int


@dataclass
class Billing:
    fee_cents: int = 0
    # An account of digits (`007`) stays text: the field says str.
    account: str = ""


# The annotation decodes the payload (JSON into Order); the returned dict is encoded as JSON
# and keeps the order's key and headers.
@weir.map(config=Billing)
def invoice(order: Order, billing):
    return {"order": order.id, "account": billing.account, "amount_cents": order.total_cents + billing.fee_cents}

"""Notification service: tells the customer about `OrderCreated` and `ShipmentCreated` events
(it runs in one pipeline per source topic), once per order and event type.

Its outputs are byte for byte those of the Rust service (crates/notification): a
`Notification` event keyed by the order id, typed by its `weir-type` header alone.
"""

import weir

WEEK_MS = 7 * 86_400_000


def _text(doc, name, default):
    # Like serde's `e[name].as_str()`: only a string field counts.
    value = doc.get(name) if isinstance(doc, dict) else None
    return value if isinstance(value, str) else default


def event(kind, order_id, payload):
    """An event as an output: JSON payload, keyed by the order id, typed by `weir-type`."""
    return weir.Output(weir.json.dumps(payload), key=order_id, headers=[(weir.headers.TYPE, kind)])


# Each source topic has its own pipeline and state, so the order id (the key) is enough to
# notify once per order and event type.
@weir.handler(idempotency=weir.by_key(window_ms=WEEK_MS))
class Notify:
    def __init__(self, config):
        config.reject_unknown([])

    def handle(self, e: dict, meta):
        order = _text(e, "order_id", "")
        kind = meta.header(weir.headers.TYPE)
        if kind == "OrderCreated":
            text = f"We received your order {order}."
        elif kind == "ShipmentCreated":
            text = f"Order {order} is on its way with {_text(e, 'carrier', '?')} (tracking {_text(e, 'tracking', '?')})."
        else:
            return []
        # Field order as the Rust `Notification` struct serializes it.
        notification = {"order_id": order, "customer": _text(e, "customer", ""), "text": text}
        return [event("Notification", order, notification)]

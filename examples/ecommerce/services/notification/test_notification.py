"""Unit tests of notification.py: the texts, the event's shape, and once per order."""

import pytest

import weir
from weir.testing import run

import notification


def order_created(order="o-1", **extra):
    doc = {"order_id": order, "customer": "ann", "sku": "s", "qty": 1, "amount_cents": 500, "card": "4242", **extra}
    return weir.Message(doc, key=order, headers={"weir-type": "OrderCreated"})


def test_an_order_is_acknowledged_as_an_event():
    [out] = run(notification, [order_created()])
    assert out.outputs == [weir.Output(
        b'{"order_id":"o-1","customer":"ann","text":"We received your order o-1."}',
        key="o-1", headers=[("weir-type", "Notification")])]


def test_a_shipment_names_carrier_and_tracking():
    ship = weir.Message({"order_id": "o-2", "customer": "bo", "carrier": "UPS", "tracking": "Z9"},
                        key="o-2", headers={"weir-type": "ShipmentCreated", "trace": "t"})
    [out] = run(notification, [ship])
    assert out.outputs[0].value == b'{"order_id":"o-2","customer":"bo","text":"Order o-2 is on its way with UPS (tracking Z9)."}'
    assert out.outputs[0].headers == [("weir-type", "Notification")], "the input's headers are not inherited"
    [out] = run(notification, [weir.Message({"order_id": "o-3"}, key="o-3", headers={"weir-type": "ShipmentCreated"})])
    assert out.outputs[0].json() == {"order_id": "o-3", "customer": "", "text": "Order o-3 is on its way with ? (tracking ?)."}


def test_once_per_order_and_other_events_ignored():
    other = weir.Message({"order_id": "o-9"}, key="o-9", headers={"weir-type": "PaymentProcessed"})
    out = run(notification, [order_created(), order_created(), other])
    assert out[1] == weir.DROP and out[2] == weir.Emit([])


def test_takes_no_config():
    with pytest.raises(weir.ConfigError, match="unknown config key `x`"):
        run(notification, [], config={"x": "1"})

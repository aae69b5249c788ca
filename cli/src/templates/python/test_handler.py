"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def payment(key, cents):
    return weir.Message({"account": "a", "cents": cents}, headers={weir.headers.IDEMPOTENCY_KEY: key})


def test_totals_and_handles_each_payment_once():
    out = run(plugin, [payment("p1", 5), payment("p1", 5), payment("p2", 7)])
    assert out[0].outputs[0].json()["balance_cents"] == 5
    assert out[1] == weir.DROP
    assert out[2].outputs[0].json()["balance_cents"] == 12
    assert out.state.get(b"balance:a") == b"12"


def test_a_currency_of_digits_is_text():
    [out] = run(plugin, [payment("p1", 5)], config={"currency": "978"})
    assert out.outputs[0].json()["currency"] == "978"

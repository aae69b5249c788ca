"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def test_bills_an_order_to_an_account_of_digits():
    order = weir.Message({"id": 7, "total_cents": 1000}, key="o-7")
    [out] = run(plugin, [order], config={"fee_cents": "50", "account": "007"})
    assert out.outputs[0].json() == {"order": 7, "account": "007", "amount_cents": 1050}
    assert out.outputs[0].key == b"o-7"


def test_a_bad_payload_fails_the_message():
    [out] = run(plugin, ["not json"])
    assert isinstance(out, weir.Fail) and not out.retryable

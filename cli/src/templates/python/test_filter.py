"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def test_keeps_matching_messages():
    out = run(plugin, [{"status": "paid"}, {"status": "new"}], config={"field": "status", "value": "paid"})
    assert out == [weir.KEEP, weir.DROP]


def test_a_value_of_digits_is_text():
    out = run(plugin, [{"a": 1}, {"a": "1"}, {"a": 2}], config={"field": "a", "value": "1"})
    assert out == [weir.KEEP, weir.KEEP, weir.DROP]

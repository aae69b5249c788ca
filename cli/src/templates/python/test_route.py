"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def test_routes_high_priority():
    out = run(plugin, [weir.Message("x", headers={"priority": "high"}), "y"])
    assert out == [weir.Forward("urgent"), weir.KEEP]


def test_routes_to_a_topic_named_by_digits():
    out = run(plugin, [weir.Message("x", headers={"priority": "high"})], config={"to": "2024"})
    assert out == [weir.Forward("2024")]

"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def at(key, ms):
    return weir.Message("x", key=key, timestamp_ms=ms)


def test_counts_and_reports_when_the_window_closes():
    out = run(plugin, [at("k", 1_000), at("k", 2_000), at("k", 61_000)])
    assert out[:2] == [weir.DROP, weir.DROP]
    assert [o.text() for o in out[2].outputs] == ["count/k: 2 in [0, 60000)"]


def test_a_tag_of_digits_is_text():
    out = run(plugin, [at("k", 0), at("k", 5_000)], config={"tag": "01", "window": "5s"})
    assert out[1].outputs[0].text() == "01/k: 1 in [0, 5000)"

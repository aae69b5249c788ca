"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def test_parses_or_drops():
    out = run(plugin, ["4.50", "four"])
    assert out[0].outputs[0].json() == 4.5
    assert out[1] == weir.DROP


def test_keeps_the_sensor_named_by_digits():
    out = run(plugin, ["0042 1.5", "42 1.5"], config={"sensor": "0042"})
    assert out[0].outputs[0].text() == "1.5"
    assert out[1] == weir.DROP

"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def test_splits_words():
    [out] = run(plugin, ["a b  c"])
    assert [o.text() for o in out.outputs] == ["a", "b", "c"]


def test_a_separator_of_digits_is_text():
    out = run(plugin, ["a00b", ""], config={"separator": "00"})
    assert [o.text() for o in out[0].outputs] == ["a", "b"]
    assert out[1] == weir.Emit([]), "no words, no outputs"

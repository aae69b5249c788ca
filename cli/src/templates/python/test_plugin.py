"""Unit tests of plugin.py, run by pytest without a server."""

import weir
from weir.testing import run

import plugin


def test_shouts():
    [out] = run(plugin, [weir.Message("hi", key="k")])
    assert out.outputs == [weir.Output("HI", key="k", headers=[])]


def test_rejects_go_to_a_topic_named_by_digits():
    assert run(plugin, [""], config={"rejects": "404"}) == [weir.Forward("404")]

"""The packed codec: batches and results round-trip; damaged buffers are refused, not trusted."""

import struct

import pytest

import weir
from weir import _packed
from weir._kinds import Runtime, definition_of


def batch(*records, topic="t"):
    return _packed.encode_batch(topic, records)


def test_batch_round_trips_lazily():
    b = batch((7, 1000, 2, b"k", b"v1", [("a", "1"), ("b", "\u00e9")]), (8, 1001, 2, None, b"", []))
    view = _packed.BatchView(b)
    m = weir.Message._packed(view, 0)
    assert m._headers is not None and m.header("b") == "\u00e9"
    assert (m.offset, m.timestamp_ms, m.partition, m.topic) == (7, 1000, 2, "t")
    assert (m.key, m.value, m.headers.pairs) == (b"k", b"v1", [("a", "1"), ("b", "\u00e9")])
    n = weir.Message._packed(view, 1)
    assert (n.key, n.value, dict(n.headers)) == (None, b"", {})


def test_result_round_trips_every_code():
    w = _packed.ResultWriter()
    w.keep()
    w.drop()
    w.emit([(b"k", b"v", *_packed.encode_headers([("h", "x")]), None), (None, b"w", b"", 0, "side")])
    w.fail("bad \u2713", True)
    w.forward("side")
    got = _packed.decode_result(w.finish(), 5)
    assert got == [(0, None), (1, None), (2, [(b"k", b"v", [("h", "x")], None), (None, b"w", [], "side")]),
                   (3, ("bad \u2713", True)), (4, "side")]


@pytest.mark.parametrize("damage", [
    lambda b: b"XXXX" + b[4:],                              # magic
    lambda b: b[:10],                                       # truncated header
    lambda b: b[:4] + struct.pack("<I", 99) + b[8:],        # more entries than fit
    lambda b: b[:8] + struct.pack("<I", 10_000) + b[12:],   # topic outside
    lambda b: b[:16 + 32] + struct.pack("<I", 10_000) + b[16 + 36:],  # value length outside
])
def test_damaged_batches_get_no_outcomes(damage):
    @weir.filter
    def keep_all(msg):
        return True

    rt = Runtime(definition_of(keep_all))
    assert rt.init([]) is None
    good = batch((0, 0, 0, b"k", b"v", [("h", "v")]))
    assert _packed.decode_result(rt.process(good), 1) == [(0, None)]
    assert _packed.decode_result(rt.process(damage(good)), 0) == []


def test_a_damaged_header_block_fails_only_the_reader():
    good = bytearray(batch((0, 0, 0, None, b"v", [("h", "v")])))
    struct.pack_into("<I", good, len(good) - 10, 500)  # the header's name length
    view = _packed.BatchView(bytes(good))
    m = weir.Message._packed(view, 0)
    assert m.value == b"v"
    with pytest.raises(_packed.PackError):
        m.headers


@pytest.mark.parametrize("result, inputs", [
    (b"WPR2" + bytes(20), 1),                                        # count mismatch
    (b"WPR2" + struct.pack("<5I", 1, 0, 0, 0, 0) + bytes([3, 0, 0, 0, 0, 0, 0, 0]), 1),  # failure index
    (b"WPR2" + struct.pack("<5I", 1, 0, 0, 0, 0) + bytes([9, 0, 0, 0, 0, 0, 0, 0]), 1),  # unknown kind
    (b"NOPE" + bytes(20), 0),
])
def test_damaged_results_are_refused(result, inputs):
    with pytest.raises(_packed.PackError):
        _packed.decode_result(result, inputs)


def test_one_result_per_batch_in_order():
    @weir.map
    def double(n: int):
        return n * 2

    out = weir.testing.run(double, [1, 2, 3])
    assert [o.outputs[0].json() for o in out] == [2, 4, 6]


def test_keep_when_identical_and_forward_when_routed():
    @weir.plugin
    def same(msg):
        if msg.text() == "route":
            return weir.Output(msg.value, to="elsewhere")
        if msg.text() == "rekey":
            return weir.Output(msg.value, key="other")
        if msg.text() == "reheader":
            return weir.Output(msg.value, headers={"h": "v"})
        return weir.Output(msg.value, key=msg.key, headers=msg.headers)

    m = lambda v: weir.Message(v, key="k", headers={"h": "v"})  # noqa: E731
    out = weir.testing.run(same, [m("x"), m("route"), m("rekey"), m("reheader")])
    assert out[0] == weir.KEEP and out[1] == weir.Forward("elsewhere") and out[3] == weir.KEEP
    assert out[2] == weir.Emit([weir.Output("rekey", key="other", headers={"h": "v"})])

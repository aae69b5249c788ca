"""JSON text written byte for byte as the Rust SDK (serde_json) writes it: numbers and key order."""

import json
import pathlib

from weir.json import dumps, float_text, loads

CASES = json.loads((pathlib.Path(__file__).parents[2] / "testdata" / "json-text.json").read_text("utf-8"))


def test_documents_are_written_as_the_rust_sdk_writes_them():
    assert len(CASES) >= 6
    for case in CASES:
        assert dumps(loads(case["in"]), sort_keys=True) == case["rust"], case["case"]


def test_floats_take_ryus_layout():
    assert [float_text(f) for f in (1234.0, -0.0, 1e16, 1e-5, 1.5e-7, 0.1, 1e21)] == [
        "1234.0", "-0.0", "1e+16", "0.00001", "1.5e-7", "0.1", "1e+21"]


def test_a_string_that_looks_like_an_exponent_is_left_alone():
    doc = {"s": "1e-05", "n": 1e-5, "k": [1, 2.5, None, True, 1e16]}
    assert dumps(doc) == '{"s":"1e-05","n":0.00001,"k":[1,2.5,null,true,1e+16]}'
    assert dumps({"s": "1e-05"}) == '{"s":"1e-05"}'

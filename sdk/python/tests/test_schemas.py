"""Confluent's framing: what the serializers write reads back, and unframed bytes are refused."""

import pytest

from weir import schemas


def test_framing_round_trips():
    assert schemas.unframe(schemas.frame(7, b"xyz")) == (7, b"xyz")
    assert schemas.unframe(b"\x01\0\0\0\x07xyz") is None
    assert schemas.unframe(b"\0\0") is None
    assert schemas.json_value(schemas.frame(3, b'{"a": 1}')) == (3, {"a": 1})
    with pytest.raises(ValueError):
        schemas.json_value(b'{"a": 1}')


def test_protobuf_framing_matches_the_rust_sdk():
    first = schemas.frame_protobuf(9, [0], b"m")
    assert first == b"\0\0\0\0\x09\0m"
    assert schemas.unframe_protobuf(first) == (9, [0], b"m")
    assert schemas.unframe_protobuf(schemas.frame_protobuf(9, [1, 2], b"m")) == (9, [1, 2], b"m")

"""Confluent's wire framing, for plugins reading and writing schema-registry records.

A framed payload is a zero byte, the schema id (4 bytes, big-endian), for Protobuf the
message indexes (zigzag varints; a single 0 for the first message), then the encoded value.
What a plugin reads and writes is declared in its project's manifest (`[tool.weir.schemas]`
in pyproject.toml, `reads`/`writes` = "subject:NAME", "avro:FILE", "json:FILE" or
"protobuf:FILE"); `weir plugin build` embeds it and the server checks pipelines against it.
"""

import json as _json
import struct

__all__ = ["frame", "frame_protobuf", "json_value", "unframe", "unframe_protobuf"]


def unframe(data):
    """`(schema_id, rest)` of a framed payload, or None if it is not framed."""
    data = bytes(data)
    if len(data) < 5 or data[0] != 0:
        return None
    return struct.unpack(">I", data[1:5])[0], data[5:]


def frame(schema_id, payload):
    """`payload` framed with `schema_id` (Avro, JSON Schema)."""
    return b"\0" + struct.pack(">I", schema_id) + bytes(payload)


def json_value(data):
    """`(schema_id, value)` of a framed JSON Schema payload; ValueError if it is not one."""
    found = unframe(data)
    if found is None:
        raise ValueError("not in Confluent's framing (byte 0, a 4-byte schema id, the payload)")
    return found[0], _json.loads(found[1])


def _zigzag(data, at):
    value, shift = 0, 0
    for i in range(5):
        if at + i >= len(data):
            return None
        b = data[at + i]
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), at + i + 1
    return None


def unframe_protobuf(data):
    """`(schema_id, message_indexes, message)` of a framed Protobuf payload, or None."""
    found = unframe(data)
    if found is None:
        return None
    schema_id, rest = found
    read = _zigzag(rest, 0)
    if read is None:
        return None
    count, at = read
    if count == 0:
        return schema_id, [0], rest[at:]
    if not 0 < count <= 64:
        return None
    indexes = []
    for _ in range(count):
        read = _zigzag(rest, at)
        if read is None:
            return None
        index, at = read
        indexes.append(index)
    return schema_id, indexes, rest[at:]


def _put_zigzag(out, n):
    v = ((n << 1) ^ (n >> 31)) & 0xFFFFFFFF
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def frame_protobuf(schema_id, indexes, message):
    """`message` framed with `schema_id` and its message indexes (`[0]`: the first message)."""
    out = bytearray(frame(schema_id, b""))
    if list(indexes) == [0]:
        out.append(0)
    else:
        _put_zigzag(out, len(indexes))
        for i in indexes:
            _put_zigzag(out, i)
    return bytes(out) + bytes(message)

"""The packed WPB2 batch / WPR2 result layouts of `weir:plugin@0.2.0` (see wit/weir.wit)."""

import struct

NONE = 0xFFFFFFFF  # marks "no key" / "no topic"

_BATCH_HEAD = struct.Struct("<4sIII")
_ENTRY = struct.Struct("<QQ8I")  # offset, timestamp, partition, key off/len, value off/len, headers off/len/count
_RESULT_HEAD = struct.Struct("<4s5I")
_CODE = struct.Struct("<B3xI")
_OUTPUT = struct.Struct("<8I")
_PAIR = struct.Struct("<II")
_FAILURE = struct.Struct("<III")
_U32 = struct.Struct("<I")

KEEP, DROP, EMIT, FAIL, FORWARD = range(5)


class PackError(ValueError):
    """A packed buffer that breaks the layout: what is wrong, where."""

    def __init__(self, why):
        super().__init__(f"malformed packed buffer: {why}")


def _range(size, off, length, what):
    if off + length > size:
        raise PackError(f"{what} at {off}..+{length} is outside the {size} bytes")
    return off, off + length


def _table(size, at, count, row, what):
    end = at + count * row
    if end > size:
        raise PackError(f"{count} {what} do not fit in {size} bytes")
    return end


class BatchView:
    """A packed batch whose tables and ranges were checked once; messages read it in place."""

    __slots__ = ("buf", "count", "topic")

    def __init__(self, buf):
        mv = memoryview(buf)
        if len(mv) < 16 or mv[:4] != b"WPB2":
            raise PackError("not a packed batch (magic)")
        _, count, t_off, t_len = _BATCH_HEAD.unpack_from(mv)
        size = len(mv)
        a, b = _range(size, t_off, t_len, "the topic")
        try:
            self.topic = str(mv[a:b], "utf-8")
        except UnicodeDecodeError:
            raise PackError("the topic is not UTF-8") from None
        _table(size, 16, count, 48, "entries")
        # Ranges only: header blocks are decoded (and checked) when a plugin reads them.
        for i in range(count):
            e = _ENTRY.unpack_from(mv, 16 + i * 48)
            if e[4] != NONE:
                _range(size, e[3], e[4], "a key")
            _range(size, e[5], e[6], "a value")
            _range(size, e[7], e[8], "a header block")
        self.buf, self.count = mv, count

    def entry(self, i):
        """(offset, timestamp_ms, partition, key_off, key_len, value_off, value_len, h_off, h_len, h_count)."""
        return _ENTRY.unpack_from(self.buf, 16 + i * 48)


def decode_headers(buf, off, length, count):
    """A header block as [(name, value)], validated."""
    out, at, end = [], off, off + length
    for _ in range(count):
        if at + 8 > end:
            raise PackError("a header runs past its block")
        n, v = _PAIR.unpack_from(buf, at)
        name_end = at + 8 + n
        value_end = name_end + v
        if value_end > end:
            raise PackError("a header runs past its block")
        try:
            out.append((str(buf[at + 8:name_end], "utf-8"), str(buf[name_end:value_end], "utf-8")))
        except UnicodeDecodeError:
            raise PackError("a header is not UTF-8") from None
        at = value_end
    if at != end:
        raise PackError("a header block has bytes after its last header")
    return out


def find_header(buf, off, length, count, name):
    """The value of the first header `name` (bytes), found without decoding the others."""
    at, end = off, off + length
    for _ in range(count):
        if at + 8 > end:
            raise PackError("a header runs past its block")
        n, v = _PAIR.unpack_from(buf, at)
        name_end = at + 8 + n
        if name_end + v > end:
            raise PackError("a header runs past its block")
        if buf[at + 8:name_end] == name:
            try:
                return str(buf[name_end:name_end + v], "utf-8")
            except UnicodeDecodeError:
                raise PackError("a header is not UTF-8") from None
        at = name_end + v
    return None


def encode_headers(pairs):
    """[(name, value)] as a header block: (bytes, count)."""
    block = bytearray()
    for name, value in pairs:
        n, v = name.encode(), value.encode()
        block += _PAIR.pack(len(n), len(v))
        block += n
        block += v
    return bytes(block), len(pairs)


def _put_record(data, key, value, block, count):
    """Append a key (or none), a value and a header block to `data`; their (offset, length)
    fields as a batch entry and a result output both lay them out, offsets relative to `data`."""
    if key is None:
        k = (0, NONE)
    else:
        k = (len(data), len(key))
        data += key
    v = (len(data), len(value))
    data += value
    h = (len(data), len(block), count)
    data += block
    return (*k, *v, *h)


def encode_batch(topic, records):
    """A WPB2 batch of `records`: (offset, timestamp_ms, partition, key|None, value, [(name, value)])."""
    entries, data = [], bytearray(topic.encode())
    for offset, ts, partition, key, value, headers in records:
        entries.append((offset, ts, partition, *_put_record(data, key, value, *encode_headers(headers))))
    base = 16 + 48 * len(entries)
    out = bytearray(base)
    _BATCH_HEAD.pack_into(out, 0, b"WPB2", len(entries), base, len(topic.encode()))
    for i, e in enumerate(entries):
        key_off = e[3] if e[4] == NONE else e[3] + base
        _ENTRY.pack_into(out, 16 + 48 * i, e[0], e[1], e[2], key_off, e[4], e[5] + base, e[6], e[7] + base, e[8], e[9])
    return bytes(out + data)


class ResultWriter:
    """Builds one WPR2 result: codes and tables first, then one data region."""

    __slots__ = ("codes", "outputs", "topics", "topic_index", "failures", "data", "count")

    def __init__(self):
        self.codes = bytearray()
        self.outputs = []  # rows with offsets relative to the data region
        self.topics = []
        self.topic_index = {}
        self.failures = []
        self.data = bytearray()
        self.count = 0

    def _code(self, kind, arg=0):
        self.codes += _CODE.pack(kind, arg)
        self.count += 1

    def keep(self):
        self._code(KEEP)

    def drop(self):
        self._code(DROP)

    def fail(self, message, retryable):
        m = message.encode("utf-8", "replace")
        self.failures.append((len(self.data), len(m), 1 if retryable else 0))
        self.data += m
        self._code(FAIL, len(self.failures) - 1)

    def forward(self, topic):
        self._code(FORWARD, self._topic(topic))

    def emit(self, records):
        """records: (key bytes-like|None, value bytes-like, header block, header count, topic|None)."""
        # Topics are entered first: a name that cannot be encoded (a lone surrogate) raises
        # before this input's code or outputs are written, so it fails this message alone.
        topics = [NONE if r[4] is None else self._topic(r[4]) for r in records]
        self._code(EMIT, len(records))
        for (key, value, block, count, _), topic in zip(records, topics):
            self.outputs.append((*_put_record(self.data, key, value, block, count), topic))

    def _topic(self, topic):
        i = self.topic_index.get(topic)
        if i is None:
            t = topic.encode()
            i = self.topic_index[topic] = len(self.topics)
            self.topics.append((len(self.data), len(t)))
            self.data += t
        return i

    def finish(self):
        outputs_at = 24 + len(self.codes)
        topics_at = outputs_at + 32 * len(self.outputs)
        failures_at = topics_at + 8 * len(self.topics)
        base = failures_at + 12 * len(self.failures)
        out = bytearray(base)
        _RESULT_HEAD.pack_into(out, 0, b"WPR2", self.count, len(self.outputs), len(self.topics), len(self.failures), 0)
        out[24:outputs_at] = self.codes
        at = outputs_at
        for ko, kl, vo, vl, ho, hl, hc, t in self.outputs:
            _OUTPUT.pack_into(out, at, ko if kl == NONE else ko + base, kl, vo + base, vl, ho + base, hl, hc, t)
            at += 32
        for off, length in self.topics:
            _PAIR.pack_into(out, at, off + base, length)
            at += 8
        for off, length, retryable in self.failures:
            _FAILURE.pack_into(out, at, off + base, length, retryable)
            at += 12
        out += self.data
        return bytes(out)


def decode_result(buf, inputs):
    """A WPR2 result validated as the host does: [(kind, payload)] per input, where payload is
    None (keep, drop), [(key, value, headers, topic)] (emit), (message, retryable) (fail) or a
    topic (forward)."""
    mv = memoryview(buf)
    size = len(mv)
    if size < 24 or mv[:4] != b"WPR2":
        raise PackError("not a packed result (magic)")
    _, count, n_out, n_topics, n_fail, _ = _RESULT_HEAD.unpack_from(mv)
    if count != inputs:
        raise PackError(f"{count} outcomes for a batch of {inputs} messages")
    outputs_at = _table(size, 24, count, 8, "codes")
    topics_at = _table(size, outputs_at, n_out, 32, "outputs")
    failures_at = _table(size, topics_at, n_topics, 8, "topics")
    _table(size, failures_at, n_fail, 12, "failures")

    def text(off, length, what):
        a, b = _range(size, off, length, what)
        try:
            return str(mv[a:b], "utf-8")
        except UnicodeDecodeError:
            raise PackError(f"{what} is not UTF-8") from None

    topics = [text(*_PAIR.unpack_from(mv, topics_at + 8 * i), "a topic") for i in range(n_topics)]
    outcomes, next_output = [], 0
    for i in range(count):
        kind, arg = _CODE.unpack_from(mv, 24 + 8 * i)
        if kind in (KEEP, DROP):
            outcomes.append((kind, None))
        elif kind == EMIT:
            if next_output + arg > n_out:
                raise PackError(f"emits {next_output + arg} outputs of {n_out}")
            outs = []
            for j in range(next_output, next_output + arg):
                ko, kl, vo, vl, ho, hl, hc, t = _OUTPUT.unpack_from(mv, topics_at - 32 * n_out + 32 * j)
                key = None if kl == NONE else bytes(mv[slice(*_range(size, ko, kl, "a key"))])
                value = bytes(mv[slice(*_range(size, vo, vl, "a value"))])
                _range(size, ho, hl, "a header block")
                if t != NONE and t >= n_topics:
                    raise PackError(f"topic {t} of {n_topics}")
                outs.append((key, value, decode_headers(mv, ho, hl, hc), None if t == NONE else topics[t]))
            next_output += arg
            outcomes.append((kind, outs))
        elif kind == FAIL:
            if arg >= n_fail:
                raise PackError(f"failure {arg} of {n_fail}")
            off, length, retryable = _FAILURE.unpack_from(mv, failures_at + 12 * arg)
            outcomes.append((kind, (text(off, length, "a failure"), retryable == 1)))
        elif kind == FORWARD:
            if arg >= n_topics:
                raise PackError(f"topic {arg} of {n_topics}")
            outcomes.append((kind, topics[arg]))
        else:
            raise PackError(f"unknown outcome kind {kind}")
    if next_output != n_out:
        raise PackError(f"{n_out} outputs, {next_output} emitted")
    return outcomes

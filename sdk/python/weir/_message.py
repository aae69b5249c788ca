"""Messages in, outputs out, and the outcomes a plugin can return."""

from collections.abc import Mapping

from . import _packed
from ._errors import Fatal
from .json import dumps as _dumps
from .json import loads as _loads


class _Inherit:
    """Default of an output's key and headers: the input's."""

    def __repr__(self):
        return "INHERIT"


INHERIT = _Inherit()


class headers:
    """Well-known header names."""

    TYPE = "weir-type"
    PRIORITY = "weir-priority"
    CORRELATION_ID = "weir-correlation-id"
    REPLY_TO = "weir-reply-to"
    IDEMPOTENCY_KEY = "weir-idempotency-key"
    TRACEPARENT = "traceparent"
    DELIVERY_COUNT = "weir-delivery-count"
    ROUTING_KEY = "weir-routing-key"
    EXCHANGE = "weir-exchange"


def to_bytes(value):
    """A payload: bytes as they are, str as UTF-8, anything else as compact JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    try:
        return _dumps(value).encode()
    except (TypeError, ValueError) as e:
        raise Fatal(f"cannot encode JSON: {e}") from None


def _key_bytes(key):
    if key is None or isinstance(key, str):
        return None if key is None else key.encode()
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    # bytes(5) would be five zero bytes: a number is a mistake, not a key.
    raise TypeError(f"a key must be str or bytes, not {type(key).__name__}")


def _pairs(hs):
    if isinstance(hs, Headers):
        return list(hs.pairs)
    if isinstance(hs, Mapping):
        return [(str(k), str(v)) for k, v in hs.items()]
    return [(str(k), str(v)) for k, v in hs]


def parse_json(data):
    """JSON text as Python values; a failure is fatal (the payload is bad)."""
    try:
        return _loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise Fatal(f"invalid JSON payload: {e}") from None


class Headers(Mapping):
    """A message's headers in order; `h[name]` is the first header of that name."""

    __slots__ = ("pairs",)

    def __init__(self, pairs=()):
        self.pairs = list(pairs)

    def __getitem__(self, name):
        for n, v in self.pairs:
            if n == name:
                return v
        raise KeyError(name)

    def __iter__(self):
        return iter(dict.fromkeys(n for n, _ in self.pairs))

    def __len__(self):
        return len({n for n, _ in self.pairs})

    def get_all(self, name):
        """Every value of header `name`, in order."""
        return [v for n, v in self.pairs if n == name]

    def __repr__(self):
        return f"Headers({self.pairs!r})"


_UNREAD = object()


class Message:
    """One input. Read from a packed batch, its key, value and headers are sliced from the
    batch only when asked for; built by hand (tests), it holds them itself."""

    __slots__ = ("_buf", "_e", "_value", "_key", "_headers", "timestamp_ms", "partition", "offset", "topic")

    def __init__(self, value=b"", *, key=None, headers=(), timestamp_ms=0, partition=0, offset=0, topic=""):
        self._buf, self._e = None, None
        self._value = to_bytes(value)
        self._key = _key_bytes(key)
        self._headers = Headers(_pairs(headers))
        self.timestamp_ms, self.partition, self.offset, self.topic = timestamp_ms, partition, offset, topic

    @classmethod
    def _packed(cls, view, i):
        m = cls.__new__(cls)
        e = view.entry(i)
        m.offset, m.timestamp_ms, m.partition = e[0], e[1], e[2]
        m._buf, m._e, m.topic = view.buf, e[3:], view.topic
        m._value = m._key = m._headers = _UNREAD
        return m

    @property
    def value(self):
        """The payload bytes."""
        if self._value is _UNREAD:
            self._value = bytes(self._buf[self._e[2]:self._e[2] + self._e[3]])
        return self._value

    @property
    def key(self):
        """The partitioning key (bytes), or None."""
        if self._key is _UNREAD:
            off, length = self._e[0], self._e[1]
            self._key = None if length == _packed.NONE else bytes(self._buf[off:off + length])
        return self._key

    @property
    def key_str(self):
        """The key as text, or None when absent or not UTF-8."""
        k = self.key
        try:
            return None if k is None else k.decode()
        except UnicodeDecodeError:
            return None

    @property
    def headers(self):
        """All headers, as a read-only mapping (decoded on first access)."""
        if self._headers is _UNREAD:
            e = self._e
            self._headers = Headers(_packed.decode_headers(self._buf, e[4], e[5], e[6]))
        return self._headers

    def header(self, name, default=None):
        """The first header `name`; searched in place, nothing else decoded."""
        if self._headers is _UNREAD:
            e = self._e
            v = _packed.find_header(self._buf, e[4], e[5], e[6], name.encode())
            return default if v is None else v
        return self._headers.get(name, default)

    def text(self):
        """The payload as text; not UTF-8 is fatal."""
        try:
            return self.value.decode()
        except UnicodeDecodeError as e:
            raise Fatal(f"payload is not UTF-8: {e}") from None

    def json(self):
        """The payload decoded from JSON; a decode failure is fatal."""
        return parse_json(self.value)

    message_type = property(lambda self: self.header(headers.TYPE), doc="The `weir-type` header.")
    correlation_id = property(lambda self: self.header(headers.CORRELATION_ID), doc="`weir-correlation-id`.")
    reply_to = property(lambda self: self.header(headers.REPLY_TO), doc="`weir-reply-to`: where a reply goes.")
    idempotency_key = property(lambda self: self.header(headers.IDEMPOTENCY_KEY), doc="`weir-idempotency-key`.")

    # The raw pieces outputs inherit: slices of the batch, never decoded.
    def _raw_key(self):
        if self._e is None or self._key is not _UNREAD:
            return self.key
        off, length = self._e[0], self._e[1]
        return None if length == _packed.NONE else self._buf[off:off + length]

    def _raw_value(self):
        if self._e is None or self._value is not _UNREAD:
            return self.value
        return self._buf[self._e[2]:self._e[2] + self._e[3]]

    def _header_block(self):
        if self._e is None or self._headers is not _UNREAD:
            return _packed.encode_headers(self.headers.pairs)
        e = self._e
        return self._buf[e[4]:e[4] + e[5]], e[6]

    def __repr__(self):
        return f"Message(value={self.value!r}, key={self.key!r}, headers={self.headers.pairs!r})"


class Output:
    """A message a plugin emits. Key and headers default to the input's (`INHERIT`); `to`
    routes it to a topic instead of the next step."""

    __slots__ = ("value", "key", "headers", "topic")

    def __init__(self, value, *, key=INHERIT, headers=INHERIT, to=None):
        self.value = to_bytes(value)
        self.key = key if key is INHERIT else _key_bytes(key)
        self.headers = headers if headers is INHERIT else _pairs(headers)
        self.topic = to

    @classmethod
    def reply(cls, request, value):
        """The reply to `request`: to its `weir-reply-to` topic with its correlation id."""
        to, cid = request.reply_to, request.correlation_id
        if to is None or cid is None:
            raise Fatal("the message carries no weir-reply-to and weir-correlation-id headers to reply to")
        return cls(value, key=None, headers=[(headers.CORRELATION_ID, cid)], to=to)

    def text(self):
        return self.value.decode()

    def json(self):
        return _loads(self.value)

    def header(self, name, default=None):
        if self.headers is INHERIT:
            return default
        return next((v for n, v in self.headers if n == name), default)

    def __eq__(self, other):
        return isinstance(other, Output) and (self.value, self.key, self.headers, self.topic) == (
            other.value, other.key, other.headers, other.topic)

    def __repr__(self):
        to = f", to={self.topic!r}" if self.topic is not None else ""
        return f"Output({self.value!r}, key={self.key!r}, headers={self.headers!r}{to})"


class Outcome:
    """What became of one input."""

    __slots__ = ()


class Keep(Outcome):
    """The input passes on unchanged."""

    def __eq__(self, other):
        return isinstance(other, Keep)

    def __repr__(self):
        return "Keep()"


class Drop(Outcome):
    """Filtered out on purpose."""

    def __eq__(self, other):
        return isinstance(other, Drop)

    def __repr__(self):
        return "Drop()"


class Emit(Outcome):
    """Zero or more outputs."""

    __slots__ = ("outputs",)

    def __init__(self, outputs):
        self.outputs = list(outputs)

    def __eq__(self, other):
        return isinstance(other, Emit) and self.outputs == other.outputs

    def __repr__(self):
        return f"Emit({self.outputs!r})"


class Forward(Outcome):
    """The input, unchanged, to `topic`."""

    __slots__ = ("topic",)

    def __init__(self, topic):
        self.topic = topic

    def __eq__(self, other):
        return isinstance(other, Forward) and self.topic == other.topic

    def __repr__(self):
        return f"Forward({self.topic!r})"


class Fail(Outcome):
    """The message failed (as reported by `weir.testing.run`)."""

    __slots__ = ("message", "retryable")

    def __init__(self, message, retryable=False):
        self.message, self.retryable = message, retryable

    def __eq__(self, other):
        return isinstance(other, Fail) and (self.message, self.retryable) == (other.message, other.retryable)

    def __repr__(self):
        return f"Fail({self.message!r}, retryable={self.retryable})"


KEEP = Keep()
DROP = Drop()


def forward(topic=None):
    """Pass the input on unchanged: to `topic`, or (None) to the next step."""
    return KEEP if topic is None else Forward(topic)

"""Key/value state of this pipeline step, committed atomically with the batch's outputs.
Keys and values are bytes (str is taken as UTF-8)."""

import json as _json

from ._errors import Fatal


def _b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


class MemoryState:
    """State in a dict, for tests and for running outside a component. TTLs count from `now_ms`,
    which `weir.testing.run` sets to each message's timestamp before processing it."""

    def __init__(self, data=None):
        self.now_ms = 0
        self._data = {}  # key -> (value, expires_at_ms or None)
        for k, v in (data or {}).items():
            self._data[_b(k)] = (_b(v), None)

    def get(self, key):
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[1] is not None and self.now_ms >= hit[1]:
            del self._data[key]
            return None
        return hit[0]

    def set(self, key, value, ttl_ms=None):
        self._data[key] = (value, None if ttl_ms is None else self.now_ms + ttl_ms)

    def delete(self, key):
        self._data.pop(key, None)

    def items(self):
        """The live entries as {key: value} (bytes)."""
        return {k: v for k in list(self._data) if (v := self.get(k)) is not None}

    def __contains__(self, key):
        return self.get(_b(key)) is not None

    def __repr__(self):
        return f"MemoryState({self.items()!r})"


# Where state lives: a MemoryState until weir._component or weir.testing install another.
backend = MemoryState()


def get(key):
    """The value under `key` (bytes), or None."""
    return backend.get(_b(key))


def set(key, value, ttl_ms=None):
    """Store `value` under `key`; with `ttl_ms` it expires that long after this batch commits."""
    backend.set(_b(key), _b(value), ttl_ms)


def delete(key):
    """Remove `key` (absent is fine)."""
    backend.delete(_b(key))


def get_json(key, default=None):
    """The value under `key` decoded from JSON, or `default`."""
    raw = get(key)
    if raw is None:
        return default
    try:
        return _json.loads(raw)
    except ValueError as e:
        raise Fatal(f"state value is not valid JSON: {e}") from None


def set_json(key, value, ttl_ms=None):
    """Store `value` under `key` as compact JSON."""
    set(key, _json.dumps(value, separators=(",", ":"), ensure_ascii=False), ttl_ms)

"""A step's `key=value` configuration, typed on request, with errors that name the bad key."""

import dataclasses
import datetime
import json as _json
import re
import types
import typing
from enum import Enum

from ._errors import ConfigError

RESERVED = "weir."
_INT = re.compile(r"[+-]?\d+")
_DURATION = re.compile(r"(\d+)\s*(ms|s|m|min|h|d|)")
_UNITS = {"": 1, "ms": 1, "s": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_MISSING = object()


class Duration(int):
    """A config field type: `500ms`, `10s`, `5m`, `24h`, `7d` (or bare milliseconds), held as ms."""


def parse_duration_ms(raw):
    """`500ms`, `10s`, `5m`, `24h`, `7d` in milliseconds; a bare number is milliseconds."""
    m = _DURATION.fullmatch(raw.strip())
    return None if m is None else int(m.group(1)) * _UNITS[m.group(2)]


def _as_int(key, raw):
    if not _INT.fullmatch(raw.strip()):
        raise ConfigError(f"config key `{key}` is not an integer: {raw!r}")
    return int(raw)


def _as_float(key, raw):
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"config key `{key}` is not a number: {raw!r}") from None


def _as_bool(key, raw):
    t = raw.strip().lower()
    if t not in ("true", "false"):
        raise ConfigError(f"config key `{key}` is not a boolean (true or false): {raw!r}")
    return t == "true"


def _as_duration(key, raw):
    ms = parse_duration_ms(raw)
    if ms is None:
        raise ConfigError(f"config key `{key}` is not a duration (use e.g. 500ms, 10s, 5m, 24h, 7d): {raw!r}")
    return ms


def _as_list(key, raw, item):
    t = raw.strip()
    if t.startswith("["):
        try:
            items = _json.loads(t)
        except ValueError:
            raise ConfigError(f"config key `{key}` is not a JSON list: {raw!r}") from None
        return [_as(key, i if isinstance(i, str) else _json.dumps(i), item) for i in items]
    return [_as(key, i.strip(), item) for i in t.split(",")] if t else []


def _as(key, raw, tp):
    """`raw` as the annotated type `tp`: parsed only where the type asks (text stays text)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _as(key, raw, inner[0]) if len(inner) == 1 else raw
    if tp is Duration:
        return Duration(_as_duration(key, raw))
    if tp is datetime.timedelta:
        return datetime.timedelta(milliseconds=_as_duration(key, raw))
    if tp is bool:
        return _as_bool(key, raw)
    if tp is int:
        return _as_int(key, raw)
    if tp is float:
        return _as_float(key, raw)
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set):
        items = _as_list(key, raw, args[0] if args else str)
        return (origin or tp)(items)
    if origin is dict or tp is dict:
        try:
            doc = _json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ConfigError(f"config key `{key}` is not a JSON object: {raw!r}")
        return doc
    if isinstance(tp, type) and issubclass(tp, Enum):
        for member in tp:
            if raw in (member.name, str(member.value)) or raw.replace("-", "_").upper() == member.name:
                return member
        raise ConfigError(f"config key `{key}` is not one of {', '.join(str(m.value) for m in tp)}: {raw!r}")
    return raw  # str, Any, unannotated: the text as written


class Config:
    """The `key=value` config of one pipeline step; reserved `weir.*` keys kept apart."""

    def __init__(self, pairs=()):
        if isinstance(pairs, dict):
            pairs = pairs.items()
        self._entries, self._reserved = {}, {}
        for k, v in pairs:
            v = _text(v)
            (self._reserved if k.startswith(RESERVED) else self._entries)[k] = v

    def reserved(self, name):
        """A key the host adds: `pipeline`, `step`, `plugin` or `version`."""
        return self._reserved.get(RESERVED + name)

    @property
    def version(self):
        """The running version of this plugin (None outside a server)."""
        v = self.reserved("version")
        return int(v) if v is not None and v.isdigit() else None

    def expand(self, text):
        """`${weir.pipeline}`, `${weir.step}`, `${weir.plugin}`, `${weir.version}` replaced."""
        for k in sorted(self._reserved):
            text = text.replace("${" + k + "}", self._reserved[k])
        return text

    def get(self, key, default=None):
        return self._entries.get(key, default)

    def __contains__(self, key):
        return key in self._entries

    def require(self, key):
        """The text of `key`, or an error naming the missing key."""
        if key not in self._entries:
            raise ConfigError(f"missing config key `{key}`")
        return self._entries[key]

    def _typed(self, key, default, parse):
        raw = self._entries.get(key)
        return default if raw is None else parse(key, raw)

    def str(self, key, default=None):
        return self._entries.get(key, default)

    def int(self, key, default=None):
        return self._typed(key, default, _as_int)

    def float(self, key, default=None):
        return self._typed(key, default, _as_float)

    def bool(self, key, default=None):
        return self._typed(key, default, _as_bool)

    def duration_ms(self, key, default=None):
        """`500ms`, `10s`, `5m`, `24h`, `7d` as milliseconds."""
        return self._typed(key, default, _as_duration)

    def with_prefix(self, prefix):
        """[(rest, value)] of keys starting with `prefix`, in key order."""
        return [(k[len(prefix):], v) for k, v in sorted(self._entries.items()) if k.startswith(prefix)]

    def items(self):
        """Every (key, value), in key order, reserved keys excluded."""
        return sorted(self._entries.items())

    def reject_unknown(self, known):
        """Fail naming the first key not in `known` (a name, or a prefix ending in `.`)."""
        known = list(known)
        for k in sorted(self._entries):
            if not any(k.startswith(p) if p.endswith(".") else k == p for p in known):
                raise ConfigError(f"unknown config key `{k}` (known keys: {', '.join(known)})")

    def load(self, cls, *, reject_unknown=False):
        """The config as dataclass `cls`: fields by name (`-` and `.` in keys read as `_`),
        typed by their annotations; a field without a default is required."""
        hints = typing.get_type_hints(cls)
        by_field = {k.replace("-", "_").replace(".", "_"): k for k in self._entries}
        names = {f.name for f in dataclasses.fields(cls)}
        if reject_unknown:
            self.reject_unknown([by_field[f] for f in by_field if f in names])
        values = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            key = by_field.get(f.name)
            if key is None:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"missing config key `{f.name}`")
                continue
            values[f.name] = _as(key, self._entries[key], hints.get(f.name, str))
        return cls(**values)

    def __repr__(self):
        return f"Config({self._entries!r})"


def _text(v):
    """Config values are text; tests may pass numbers and booleans, written as weir would."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v if isinstance(v, str) else str(v)

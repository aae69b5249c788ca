"""JSON helpers: dotted paths (`a.b.0.c`) to get, set and remove values in decoded documents."""

import json as _json

MISSING = object()  # a path that is absent (a present JSON null is None)


def _index(seg, items):
    return int(seg) if seg.isdigit() and int(seg) < len(items) else None


def get(doc, path, default=None):
    """The value at `path`, or `default` when absent."""
    cur = doc
    for seg in path.split("."):
        if isinstance(cur, dict) and seg in cur:
            cur = cur[seg]
        elif isinstance(cur, list) and _index(seg, cur) is not None:
            cur = cur[int(seg)]
        else:
            return default
    return cur


def set(doc, path, value):
    """Set `path` to `value`, creating objects on the way (and in place of nulls). False when
    a segment on the way is a scalar, which would have to be overwritten."""
    *parents, last = path.split(".")
    cur, holder, slot = doc, None, None
    for seg in parents:
        if cur is None and holder is not None:
            cur = holder[slot] = {}
        if isinstance(cur, dict):
            holder, slot = cur, seg
            cur = cur.setdefault(seg, None)
        elif isinstance(cur, list) and _index(seg, cur) is not None:
            holder, slot = cur, int(seg)
            cur = cur[slot]
        else:
            return False
    if cur is None and holder is not None:
        cur = holder[slot] = {}
    if isinstance(cur, dict):
        cur[last] = value
        return True
    if isinstance(cur, list) and _index(last, cur) is not None:
        cur[int(last)] = value
        return True
    return False


def remove(doc, path, default=None):
    """Remove and return the value at `path` (`default` when absent)."""
    parent, _, last = path.rpartition(".")
    cur = get(doc, parent, MISSING) if parent else doc
    if isinstance(cur, dict) and last in cur:
        return cur.pop(last)
    if isinstance(cur, list) and _index(last, cur) is not None:
        return cur.pop(int(last))
    return default


def _strict(name):
    raise ValueError(f"{name} is not JSON")


def parse_value(raw):
    """A config value as JSON: valid JSON is taken as such (`42`, `true`, `{"a":1}`), anything
    else as a string."""
    try:
        return _json.loads(raw, parse_constant=_strict)
    except ValueError:
        return raw


def dumps(value, *, sort_keys=False):
    """Compact JSON text, UTF-8 as is (as weir's Rust SDK writes it)."""
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=sort_keys)


def as_text(value):
    """The text a value compares as: strings without quotes, everything else as compact JSON
    (object keys sorted, as the Rust SDK writes a decoded document)."""
    return value if isinstance(value, str) else dumps(value, sort_keys=True)

"""JSON helpers: dotted paths (`a.b.0.c`) to get, set and remove values in decoded documents."""

import json as _json
import re as _re

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
        return loads(raw)
    except ValueError:
        return raw


def _int(text):
    # serde_json, under the Rust SDK, reads an integer outside 64 bits, and -0, as a float.
    n = int(text)
    return n if -(1 << 63) <= n < (1 << 64) and text != "-0" else float(text)


def loads(text):
    """JSON text as Python values, numbers read as the Rust SDK reads them: `1234.0` and `1e3`
    stay floats, integers beyond 64 bits and `-0` become floats. NaN and Infinity are refused."""
    return _json.loads(text, parse_int=_int, parse_constant=_strict)


# How Python writes a float with a negative exponent (1e-05): never inside a JSON number's
# decimal form, and rare in strings, so its absence proves the fast path's text is right.
_NEGATIVE_EXPONENT = _re.compile(r"[0-9]e-[0-9]")


def dumps(value, *, sort_keys=False):
    """Compact JSON text, UTF-8 as is, byte for byte as weir's Rust SDK (serde_json) writes it:
    with `sort_keys`, what Rust writes for a parsed document."""
    text = _json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=sort_keys)
    # Python writes 1e-5 as 1e-05 and 1e-7 as 1e-07 where serde_json writes 0.00001 and 1e-7
    # (positive exponents agree: 1e+16); only a document with such a float is written again,
    # by the slower writer below.
    return text if _NEGATIVE_EXPONENT.search(text) is None else "".join(_write(value, sort_keys))


def float_text(f):
    """A finite float as serde_json writes it (the shortest digits that read back as `f`, laid
    out by its formatter, zmij): 1234.0, 0.00001, 1e+16, 1.5e-7, -0.0."""
    r = repr(f)
    sign, r = ("-", r[1:]) if r.startswith("-") else ("", r)
    mantissa, _, exp = r.partition("e")
    whole, _, frac = mantissa.partition(".")
    run = whole + frac
    digits = run.lstrip("0").rstrip("0")
    if not digits:
        return sign + "0.0"
    # kk: where the decimal point falls, counted in digits from the first significant one.
    kk = len(whole) + int(exp or 0) - (len(run) - len(run.lstrip("0")))
    n = len(digits)
    if n <= kk <= 16:
        return sign + digits + "0" * (kk - n) + ".0"
    if 0 < kk <= 16:
        return sign + digits[:kk] + "." + digits[kk:]
    if -5 < kk <= 0:
        return sign + "0." + "0" * -kk + digits
    point = digits if n == 1 else digits[0] + "." + digits[1:]
    return f"{sign}{point}e{kk - 1:+d}"


_string = _json.encoder.encode_basestring  # non-ASCII as is, as ensure_ascii=False writes


def _key(k):
    # The key conversions json.dumps makes (a dict written from Python may have any of these).
    if isinstance(k, str):
        return k
    if k is True or k is False or k is None:
        return {True: "true", False: "false", None: "null"}[k]
    return float_text(k) if isinstance(k, float) else int.__repr__(k)


def _write(v, sort_keys):
    # Only for values json.dumps has just written, so every type here is one it accepts.
    if isinstance(v, str):
        yield _string(v)
    elif v is None or v is True or v is False:
        yield {None: "null", True: "true", False: "false"}[v]
    elif isinstance(v, int):
        yield int.__repr__(v)
    elif isinstance(v, float):
        yield float_text(v)
    elif isinstance(v, dict):
        yield "{"
        for i, (k, item) in enumerate(sorted(v.items()) if sort_keys else v.items()):
            yield ("," if i else "") + _string(_key(k)) + ":"
            yield from _write(item, sort_keys)
        yield "}"
    else:
        yield "["
        for i, item in enumerate(v):
            if i:
                yield ","
            yield from _write(item, sort_keys)
        yield "]"


def as_text(value):
    """The text a value compares as: strings without quotes, everything else as compact JSON
    (object keys sorted, as the Rust SDK writes a decoded document)."""
    return value if isinstance(value, str) else dumps(value, sort_keys=True)

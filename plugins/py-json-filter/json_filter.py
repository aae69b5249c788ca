"""`json-filter` in Python: keeps JSON messages whose `field` compares to a configured value.

Config as the Rust plugin's: `field` (dotted path, required), `equals` (the operand),
`op` (eq, ne, exists, missing, gt, lt, contains; default eq), `on-invalid` (fail or drop).
"""

import weir
from weir.json import MISSING, as_text

_OPS = ("eq", "ne", "exists", "missing", "gt", "lt", "contains")


def _q(text):
    # Rust's `{:?}` of a string: double-quoted, escaped.
    return weir.json.dumps(text)


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@weir.filter
class JsonFilter:
    def __init__(self, config):
        # Checked in the Rust plugin's order, so the same bad config names the same key.
        config.reject_unknown(["field", "equals", "op", "on-invalid"])
        self.op = config.get("op", "eq")
        if self.op not in _OPS:
            raise weir.ConfigError(f"config key `op` has invalid value {_q(self.op)}: "
                                   "use eq, ne, exists, missing, gt, lt or contains")
        self.operand = "" if self.op in ("exists", "missing") else config.require("equals")
        self.number = None
        if self.op in ("gt", "lt"):
            try:
                self.number = float(self.operand)
            except ValueError:
                raise weir.ConfigError(f"config key `equals` must be a number for op {self.op.capitalize()}, "
                                       f"got {_q(self.operand)}") from None
        on_invalid = config.get("on-invalid", "fail")
        if on_invalid not in ("fail", "drop"):
            raise weir.ConfigError(f"config key `on-invalid` has invalid value {_q(on_invalid)}: use fail or drop")
        self.drop_invalid = on_invalid == "drop"
        self.field = config.require("field")

    def filter(self, msg):
        try:
            doc = msg.json()
        except weir.Fatal:
            if self.drop_invalid:
                return False
            raise
        return self.matches(weir.json.get(doc, self.field, MISSING))

    def matches(self, v):
        op = self.op
        if op == "exists":
            return v is not MISSING
        if op == "missing":
            return v is MISSING
        if v is MISSING:
            return op == "ne"
        if op == "eq":
            return as_text(v) == self.operand
        if op == "ne":
            return as_text(v) != self.operand
        if op == "gt":
            return _number(v) and v > self.number
        if op == "lt":
            return _number(v) and v < self.number
        if isinstance(v, list):  # contains
            return any(as_text(i) == self.operand for i in v)
        return self.operand in as_text(v)

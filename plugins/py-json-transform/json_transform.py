"""`json-transform` in Python: renames, drops and sets fields of JSON messages.

Config as the Rust plugin's, applied in this order: `rename.<from>=<to>`, `drop=a,b.c`,
`set.<path>=<value>` (JSON if it parses, else a string; `${weir.plugin}`, `${weir.version}`,
... expanded), and `reply=true` to send the result as the reply to a request.
"""

import copy

import weir
from weir.json import MISSING, dumps, parse_value, remove, set as set_path


@weir.map
class JsonTransform:
    def __init__(self, config):
        config.reject_unknown(["rename.", "drop", "set.", "reply"])
        self.renames = config.with_prefix("rename.")
        self.drops = [p.strip() for p in config.get("drop", "").split(",") if p.strip()]
        self.sets = [(path, parse_value(config.expand(v))) for path, v in config.with_prefix("set.")]
        for _, to in self.renames:
            if not to:
                raise weir.ConfigError(f"config key `rename.` needs a target path, got {dumps(to)}")
        reply = config.get("reply", "false")
        if reply not in ("true", "false"):
            # Rust's bool parse, word for word, so both plugins explain it alike.
            raise weir.ConfigError(f"config key `reply` has invalid value {dumps(reply)}: "
                                   "provided string was not `true` or `false`")
        self.reply = reply == "true"

    def map(self, msg):
        doc = msg.json()
        if not isinstance(doc, dict):
            raise weir.Fatal("payload is JSON but not an object")
        self.apply(doc)
        # Keys sorted and compact: byte for byte what the Rust plugin writes.
        value = dumps(doc, sort_keys=True)
        if self.reply:
            return weir.Output.reply(msg, value)
        return weir.Output(value)  # key and headers kept

    def apply(self, doc):
        for src, to in self.renames:
            v = remove(doc, src, MISSING)
            if v is not MISSING and not set_path(doc, to, v):
                raise weir.Fatal(f"cannot rename `{src}` to `{to}`: a parent of `{to}` is not an object")
        for path in self.drops:
            remove(doc, path)
        for path, v in self.sets:
            # A copy per message: documents must not share (and later change) config values.
            if not set_path(doc, path, copy.deepcopy(v)):
                raise weir.Fatal(f"cannot set `{path}`: a parent is not an object")

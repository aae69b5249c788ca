"""`hostile` in Python: misbehaves on purpose (config `mode`) on messages equal to `trigger`.

Modes: `panic` (weir.abort: a trap), `loop` (spin: the CPU budget stops it), `fail`,
`fail-retryable`, `alloc` (allocate until memory runs out). Other messages pass unchanged;
without `trigger`, every message triggers.
"""

import weir

_MODES = ("panic", "loop", "fail", "fail-retryable", "alloc")


@weir.plugin
class Hostile:
    def __init__(self, config):
        config.reject_unknown(["mode", "trigger"])
        self.mode = config.get("mode", "")
        if self.mode not in _MODES:
            raise weir.ConfigError(f"config key `mode` has invalid value {self.mode!r}: use {', '.join(_MODES)}")
        trigger = config.get("trigger")
        self.trigger = None if trigger is None else trigger.encode()

    def process(self, msg):
        if self.trigger is not None and msg.value != self.trigger:
            return weir.KEEP
        if self.mode == "panic":
            weir.abort(f"hostile plugin panics on message at offset {msg.offset}")
        if self.mode == "loop":
            n = 0
            while True:
                n += 1
        if self.mode == "fail":
            raise weir.Fatal("this message is bad")
        if self.mode == "fail-retryable":
            raise weir.Retryable("a dependency is busy")
        hoard = []
        try:
            while True:
                hoard.append(bytearray(1 << 20))
        except MemoryError:
            # Python survives a failed allocation; trap like Rust's allocation failure does.
            hoard = None
            weir.abort("memory allocation failed")

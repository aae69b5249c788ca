"""A weir aggregate: counts messages per key in tumbling windows, reported as `TAG/KEY: N in [start, end)`."""

from dataclasses import dataclass

import weir


@weir.aggregate
class Counts:
    @dataclass
    class Settings:
        window: weir.Duration = weir.Duration(60_000)  # `5s`, `1m`, ... in milliseconds
        tag: str = "count"  # text as written, digits too

    def __init__(self, config):
        s = config.load(self.Settings)
        self.window_ms, self.tag = s.window, s.tag

    def key(self, msg, meta):
        return msg.key_str or "(none)"

    def add(self, count, msg):
        # The accumulator starts at 0 and lives in step state (as JSON) between messages.
        return count + 1

    def emit(self, key, window, count):
        # Called per key once a later window's first message arrives; keyed by the key.
        return f"{self.tag}/{key}: {count} in [{window.start_ms}, {window.end_ms})"

"""A weir filter: keeps JSON messages whose `field` equals `value` (both from the config)."""

from dataclasses import dataclass

import weir


@dataclass
class Settings:
    field: str
    # Text as written: `value=1` stays "1" and matches {"a": 1} and {"a": "1"} alike.
    value: str


@weir.filter(config=Settings)
def keep(msg, settings):
    # Numbers and booleans compare by their JSON text, so config text can name them.
    found = weir.json.get(msg.json(), settings.field)
    return found is not None and weir.json.as_text(found) == settings.value

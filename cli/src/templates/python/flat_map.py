"""A weir flat-map: one output per word of the payload, split on `separator` (whitespace when unset)."""

from dataclasses import dataclass
from typing import Optional

import weir


@dataclass
class Settings:
    separator: Optional[str] = None


@weir.flat_map(config=Settings)
def words(text: str, settings):
    # Each returned str becomes one text output with the input's key and headers.
    if not settings.separator:
        return text.split()
    return [w for w in text.split(settings.separator) if w]

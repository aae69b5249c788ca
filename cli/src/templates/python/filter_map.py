"""A weir filter-map: reads `SENSOR VALUE` lines, keeping the number of the configured `sensor`."""

from dataclasses import dataclass
from typing import Optional

import weir


@dataclass
class Settings:
    # Unset: every sensor. Text as written, so sensor `0042` is not sensor `42`.
    sensor: Optional[str] = None


@weir.filter_map(config=Settings)
def reading(line: str, settings):
    sensor, _, value = line.strip().rpartition(" ")
    if settings.sensor is not None and settings.sensor != sensor:
        return None  # None drops the message
    try:
        return float(value)  # a number is emitted as JSON
    except ValueError:
        return None

"""weir's Python SDK: write stream-processing plugins compiled to wasm32-wasip2 components."""

from . import json, log, schemas, state
from ._config import Config, Duration
from ._errors import Aborted, ConfigError, Fatal, Retryable, WeirError, abort
from ._kinds import (Selector, Window, aggregate, by_field, by_header, by_key, filter, filter_map, flat_map, handler,
                     map, plugin, route)
from ._message import (DROP, INHERIT, KEEP, Drop, Emit, Fail, Forward, Headers, Keep, Message, Outcome, Output,
                       forward, headers)

__all__ = [
    "Aborted", "Config", "ConfigError", "DROP", "Drop", "Duration", "Emit", "Fail", "Fatal", "Forward", "Headers",
    "INHERIT", "KEEP", "Keep", "Message", "Outcome", "Output", "Retryable", "Selector", "WeirError", "Window",
    "abort", "aggregate", "by_field", "by_header", "by_key", "filter", "filter_map", "flat_map", "forward",
    "handler", "headers", "json", "log", "map", "plugin", "route", "schemas", "state",
]

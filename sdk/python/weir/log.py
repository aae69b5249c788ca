"""Logging into the host's tracing output (outside a component: stderr, or a test's list)."""

import sys

LEVELS = ("trace", "debug", "info", "warn", "error")


def _stderr(level, message):
    print(f"[{level}] {message}", file=sys.stderr)


# Where lines go: (level name, message) -> None; replaced by weir._component / weir.testing.
backend = _stderr


def write(level, message):
    backend(level, str(message))


def trace(message):
    backend("trace", str(message))


def debug(message):
    backend("debug", str(message))


def info(message):
    backend("info", str(message))


def warn(message):
    backend("warn", str(message))


def error(message):
    backend("error", str(message))

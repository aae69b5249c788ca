"""Failures of one message (retryable or fatal) and `abort`, which traps the instance."""

import os
import sys


class WeirError(Exception):
    """A plugin's failure on one message; `retryable` tells the pipeline's failure policy."""

    retryable = False


class Retryable(WeirError):
    """Something outside the message failed and may succeed later: the message is retried."""

    retryable = True


class Fatal(WeirError):
    """The message itself is bad: retrying cannot help (dead-lettered or halts, per policy)."""


class ConfigError(Fatal):
    """A step's config is wrong; the text names the bad key."""


class Aborted(BaseException):
    """Raised by `abort` outside a component (tests), where a trap would kill the test runner.
    A BaseException so that `except Exception` in plugin code does not swallow it."""


# Set by weir._component: inside a component, abort really traps.
IN_COMPONENT = False


def abort(reason):
    """Trap the instance, like a Rust panic: the host discards it and the pipeline's failure
    policy applies to the message. Outside a component it raises `Aborted` instead."""
    from . import log

    log.error(f"abort: {reason}")
    if IN_COMPONENT:
        # The host quotes what a trapped plugin printed, so the dead letter names the reason.
        sys.stderr.write(f"abort: {reason}\n")
        sys.stderr.flush()
        os.abort()
    raise Aborted(reason)

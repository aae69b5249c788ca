"""Unit tests of hostile.py: the modes that can run in a test process."""

import pytest

import weir
from weir.testing import run

import hostile


def test_fails_only_the_trigger():
    out = run(hostile, ["ok-1", "boom", "ok-2"], config={"mode": "fail", "trigger": "boom"})
    assert out == [weir.KEEP, weir.Fail("this message is bad", False), weir.KEEP]
    out = run(hostile, ["boom"], config={"mode": "fail-retryable", "trigger": "boom"})
    assert out == [weir.Fail("a dependency is busy", True)]


def test_panic_aborts():
    with pytest.raises(weir.Aborted, match="offset 1"):
        run(hostile, ["ok", "boom"], config={"mode": "panic", "trigger": "boom"})


def test_bad_config_names_the_key():
    with pytest.raises(weir.ConfigError, match="`mode`"):
        run(hostile, [], config={"mode": "nap"})
    with pytest.raises(weir.ConfigError, match="`huge`"):
        run(hostile, [], config={"mode": "fail", "huge": "1"})

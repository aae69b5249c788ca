"""Typed config: values are text, parsed only where asked; errors name the key and the text."""

import datetime
import enum
import dataclasses
from dataclasses import dataclass
from typing import Optional

import pytest

import weir
from weir import Config, ConfigError


def test_accessors_parse_and_name_the_key():
    c = Config({"min": "abc", "n": "42", "x": "1.5", "on": "true", "w": "5m", "zip": "02134"})
    assert (c.int("n"), c.float("x"), c.bool("on"), c.duration_ms("w"), c.str("zip")) == (42, 1.5, True, 300_000, "02134")
    assert c.int("absent", 7) == 7 and c.str("absent") is None
    with pytest.raises(ConfigError, match=r"config key `min` is not an integer: 'abc'"):
        c.int("min")
    with pytest.raises(ConfigError, match="`min` is not a number"):
        c.float("min")
    with pytest.raises(ConfigError, match="`min` is not a boolean"):
        c.bool("min")
    with pytest.raises(ConfigError, match=r"`min` is not a duration \(use e.g. 500ms"):
        c.duration_ms("min")
    with pytest.raises(ConfigError, match="missing config key `max`"):
        c.require("max")


def test_reserved_keys_are_apart_and_expand():
    c = Config([("weir.version", "7"), ("weir.plugin", "p"), ("tag", "${weir.plugin}@${weir.version}")])
    assert c.version == 7 and c.reserved("plugin") == "p"
    c.reject_unknown(["tag"])
    assert c.expand(c.get("tag")) == "p@7" and c.items() == [("tag", "${weir.plugin}@${weir.version}")]
    assert Config().version is None and Config().expand("${weir.version}") == "${weir.version}"


def test_unknown_keys_are_rejected_and_prefixes_admitted():
    c = Config({"set.a": "1", "field": "x"})
    c.reject_unknown(["field", "set."])
    with pytest.raises(ConfigError, match=r"unknown config key `set.a` \(known keys: field\)"):
        c.reject_unknown(["field"])
    assert c.with_prefix("set.") == [("a", "1")]


class Mode(enum.Enum):
    STRICT = "strict"
    LENIENT = "lenient"


@dataclass
class Settings:
    min: int
    field: str = "status"
    value: str = ""
    ratio: float = 1.0
    on: bool = False
    every: weir.Duration = weir.Duration(1000)
    pause: datetime.timedelta = datetime.timedelta(0)
    tags: list[str] = dataclasses.field(default_factory=list)
    ids: list[int] = dataclasses.field(default_factory=list)
    mode: Mode = Mode.STRICT
    maybe: Optional[str] = None
    on_invalid: str = "fail"
    limits_max: int = 0


def test_dataclass_loading_types_fields_and_keeps_text():
    s = Config({"min": "3", "value": "007", "ratio": "0.5", "on": "true", "every": "1500ms", "pause": "2s",
                "tags": "a, b", "ids": "[1,2]", "mode": "lenient", "maybe": "1", "on-invalid": "drop",
                "limits.max": "9", "weir.version": "1"}).load(Settings)
    assert (s.min, s.value, s.ratio, s.on, s.every, s.pause) == (3, "007", 0.5, True, 1500, datetime.timedelta(seconds=2))
    assert (s.tags, s.ids, s.mode, s.maybe, s.on_invalid, s.limits_max) == (["a", "b"], [1, 2], Mode.LENIENT, "1", "drop", 9)


@pytest.mark.parametrize("raw", ["1", "true", "1.5", "007", "-0", "null", "[1]", '{"a":1}'])
def test_text_fields_take_the_text_as_written(raw):
    s = Config({"min": "1", "value": raw, "maybe": raw}).load(Settings)
    assert (s.value, s.maybe) == (raw, raw)


@pytest.mark.parametrize("pairs, error", [
    ({"min": "abc"}, "config key `min` is not an integer: 'abc'"),
    ({}, "missing config key `min`"),
    ({"min": "1", "every": "soon"}, "config key `every` is not a duration"),
    ({"min": "1", "ids": "1,x"}, "config key `ids` is not an integer: 'x'"),
    ({"min": "1", "mode": "loose"}, "config key `mode` is not one of strict, lenient: 'loose'"),
])
def test_dataclass_errors_name_the_key(pairs, error):
    with pytest.raises(ConfigError) as e:
        Config(pairs).load(Settings)
    assert error in str(e.value)


def test_unknown_keys_rejected_on_request():
    Config({"min": "1", "typo": "x"}).load(Settings)
    with pytest.raises(ConfigError, match="`typo`"):
        Config({"min": "1", "typo": "x"}).load(Settings, reject_unknown=True)


def test_init_errors_come_back_as_text_naming_the_key():
    @dataclass
    class Need:
        min: int

    @weir.filter(config=Need)
    def f(msg, settings):
        return msg.json()["n"] >= settings.min

    assert weir.testing.run(f, [{"n": 5}, {"n": 1}], config={"min": 2}) == [weir.KEEP, weir.DROP]
    with pytest.raises(ConfigError, match="config key `min` is not an integer: 'abc'"):
        weir.testing.run(f, [], config={"min": "abc"})

    @weir.filter
    class Broken:
        def __init__(self, config):
            raise ZeroDivisionError("oops")

        def filter(self, msg):
            return True

    with pytest.raises(ConfigError, match="ZeroDivisionError: oops"):
        weir.testing.run(Broken, [])


def test_json_paths():
    doc = {"a": {"b": [1, {"c": "x"}]}}
    assert weir.json.get(doc, "a.b.1.c") == "x" and weir.json.get(doc, "a.z") is None
    assert weir.json.set(doc, "a.new.deep", 5) and weir.json.get(doc, "a.new.deep") == 5
    assert not weir.json.set(doc, "a.new.deep.more", 1), "cannot descend into a number"
    assert weir.json.remove(doc, "a.b.0") == 1 and weir.json.get(doc, "a.b.0.c") == "x"
    assert weir.json.remove(doc, "nope", weir.json.MISSING) is weir.json.MISSING
    assert weir.json.parse_value("42") == 42 and weir.json.parse_value("paid") == "paid"
    assert weir.json.as_text(42) == "42" and weir.json.as_text("paid") == "paid" and weir.json.as_text(True) == "true"


def test_state_ttl_in_memory():
    s = weir.state.MemoryState()
    s.set(b"k", b"v", 100)
    assert s.get(b"k") == b"v"
    s.now_ms = 100
    assert s.get(b"k") is None

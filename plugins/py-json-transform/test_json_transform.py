"""Unit tests of json_transform.py: the Rust json-transform's cases, through weir.testing."""

import pytest

import weir
from weir.testing import run

import json_transform


def one(config, doc, **message):
    [out] = run(json_transform, [weir.Message(doc, key="k", **message)], config=config)
    return out


def test_renames_drops_and_sets_in_order():
    config = {"rename.user.mail": "email", "drop": "secret, user.tmp", "set.meta.v": "2", "set.source": "web"}
    out = one(config, '{"user":{"mail":"a@b","tmp":1,"name":"x"},"secret":"s"}', headers={"h": "v"})
    [o] = out.outputs
    assert o.value == b'{"email":"a@b","meta":{"v":2},"source":"web","user":{"name":"x"}}', "sorted, compact"
    assert (o.key, o.headers, o.topic) == (b"k", [("h", "v")], None), "key and headers kept"


def test_set_values_expand_reserved_keys_and_parse_as_json():
    config = {"set.by": "${weir.plugin}@${weir.version}", "set.limits": '{"max":3}', "set.n": '"42"',
              "set.ok": "true", "weir.plugin": "t", "weir.version": "4"}
    doc = one(config, '{"ü":"✓"}').outputs[0]
    assert doc.value == '{"by":"t@4","limits":{"max":3},"n":"42","ok":true,"ü":"✓"}'.encode()


def test_an_unchanged_document_is_kept():
    assert one({"drop": "absent"}, '{"a":1}') == weir.KEEP


def test_reply_goes_to_the_requester():
    out = one({"reply": "true", "set.done": "true"}, "{}",
              headers={"weir-reply-to": "replies", "weir-correlation-id": "c1", "h": "v"})
    assert out.outputs == [weir.Output(b'{"done":true}', key=None, headers=[("weir-correlation-id", "c1")], to="replies")]
    out = one({"reply": "true"}, "{}")
    assert isinstance(out, weir.Fail) and "weir-reply-to" in out.message


def test_rejects_non_objects_and_bad_paths():
    assert one({"set.a": "1"}, "[1,2]") == weir.Fail("payload is JSON but not an object", False)
    assert one({"set.a": "1"}, "nope").message.startswith("invalid JSON payload")
    assert one({"set.a.b": "1"}, '{"a":5}') == weir.Fail("cannot set `a.b`: a parent is not an object", False)
    assert one({"rename.x": "a.b"}, '{"x":1,"a":5}').message == "cannot rename `x` to `a.b`: a parent of `a.b` is not an object"


@pytest.mark.parametrize("config, error", [
    ({"sett.a": "1"}, "unknown config key `sett.a`"),
    ({"rename.a": ""}, 'config key `rename.` needs a target path, got ""'),
    ({"reply": "yes"}, 'config key `reply` has invalid value "yes"'),
])
def test_config_errors_name_the_key(config, error):
    with pytest.raises(weir.ConfigError) as e:
        run(json_transform, [], config=config)
    assert error in str(e.value)

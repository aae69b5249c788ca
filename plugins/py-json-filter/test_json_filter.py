"""Unit tests of json_filter.py: the Rust json-filter's cases, through weir.testing."""

import pytest

import weir
from weir.testing import run

import json_filter


def keeps(config, *docs):
    return [o == weir.KEEP for o in run(json_filter, docs, config=config)]


def test_equals_compares_strings_and_numbers():
    f = {"field": "order.status", "equals": "paid"}
    assert keeps(f, '{"order":{"status":"paid"}}', '{"order":{"status":"new"}}', '{"order":{}}') == [True, False, False]
    assert keeps({"field": "n", "equals": "3"}, '{"n":3}', '{"n":4}', '{"n":"3"}') == [True, False, True]


def test_other_ops():
    gt = {"field": "total", "op": "gt", "equals": "100"}
    assert keeps(gt, '{"total":150.5}', '{"total":100}', '{"total":true}') == [True, False, False]
    assert keeps({"field": "email", "op": "exists"}, '{"email":null}', "{}") == [True, False]
    assert keeps({"field": "email", "op": "missing"}, '{"email":null}', "{}") == [False, True]
    assert keeps({"field": "a", "op": "ne", "equals": "x"}, '{"a":"x"}', '{"a":"y"}', "{}") == [False, True, True]
    c = {"field": "tags", "op": "contains", "equals": "vip"}
    assert keeps(c, '{"tags":["new","vip"]}', '{"tags":["new"]}', '{"tags":"very vip"}') == [True, False, True]
    assert keeps({"field": "o", "op": "contains", "equals": '"a":1'}, '{"o":{"b":2,"a":1}}') == [True]


def test_invalid_payloads_fail_or_drop_as_configured():
    [out] = run(json_filter, ["not json"], config={"field": "a", "equals": "1"})
    assert isinstance(out, weir.Fail) and not out.retryable and out.message.startswith("invalid JSON payload")
    assert run(json_filter, ["not json"], config={"field": "a", "equals": "1", "on-invalid": "drop"}) == [weir.DROP]


@pytest.mark.parametrize("config, error", [
    ({"equals": "1"}, "missing config key `field`"),
    ({"field": "a"}, "missing config key `equals`"),
    ({"field": "a", "equals": "1", "typo": "x"}, "unknown config key `typo`"),
    ({"field": "a", "op": "gt", "equals": "x"}, 'config key `equals` must be a number for op Gt, got "x"'),
    ({"field": "a", "op": "like", "equals": "x"}, 'config key `op` has invalid value "like"'),
    ({"field": "a", "equals": "1", "on-invalid": "skip"}, "config key `on-invalid`"),
])
def test_config_errors_name_the_key(config, error):
    with pytest.raises(weir.ConfigError) as e:
        run(json_filter, [], config=config)
    assert error in str(e.value)


def test_reserved_keys_are_allowed():
    assert keeps({"field": "a", "equals": "1", "weir.version": "3"}, '{"a":1}') == [True]

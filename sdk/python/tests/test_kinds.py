"""Every kind, as a function and as a class, run through weir.testing (codec included)."""

from dataclasses import dataclass

import pytest

import weir
from weir.testing import run


def test_filter_function_and_class():
    @weir.filter
    def big(msg, config):
        return msg.json()["total"] >= config.int("min", 100)

    assert run(big, [{"total": 150}, {"total": 50}], config={"min": 10}) == [weir.KEEP, weir.KEEP]
    assert run(big, [{"total": 150}, {"total": 50}]) == [weir.KEEP, weir.DROP]

    @weir.filter
    class Big:
        def __init__(self, config):
            self.min = config.int("min", 100)

        def filter(self, msg):
            return msg.json()["total"] >= self.min

    assert run(Big, [{"total": 150}, {"total": 5}]) == [weir.KEEP, weir.DROP]


def test_map_outputs_are_typed_and_inherit():
    @dataclass
    class Order:
        id: int
        total: int

    @weir.map
    def invoice(order: Order, config):
        return {"order": order.id, "due": order.total}

    [out] = run(invoice, [weir.Message({"id": 1, "total": 5, "extra": 0}, key="k", headers={"h": "v"})])
    assert out.outputs == [weir.Output(b'{"order":1,"due":5}', key="k", headers=[("h", "v")])]

    @weir.map
    def raw(data: bytes):
        return data[::-1]

    assert run(raw, [b"ab"])[0].outputs[0].value == b"ba"


def test_map_failures_are_fatal_and_name_the_exception():
    @weir.map
    def broken(doc: dict):
        return doc["missing"]

    out = run(broken, [{}, "not json"])
    assert out[0] == weir.Fail("KeyError: 'missing'", False)
    assert out[1].message.startswith("invalid JSON payload") and not out[1].retryable


def test_filter_map_and_flat_map():
    @weir.filter_map
    def numbers(text: str):
        try:
            return float(text)
        except ValueError:
            return None

    assert run(numbers, ["4.50", "four", "4.5"]) == [
        weir.Emit([weir.Output(b"4.5", key=None, headers=[])]), weir.DROP, weir.KEEP]

    @weir.flat_map
    def words(text: str, config):
        return text.split(config.str("sep"))

    out = run(words, ["a b", ""], config={"sep": " "})
    assert [o.text() for o in out[0].outputs] == ["a", "b"]
    assert out[1] == weir.KEEP, "one output identical to the input is a keep"


def test_route_and_plugin():
    @weir.route
    def urgent(msg):
        return "urgent" if msg.header("priority") == "high" else None

    out = run(urgent, [weir.Message("x", headers={"priority": "high"}), "y"])
    assert out == [weir.Forward("urgent"), weir.KEEP]

    @weir.plugin
    class Shout:
        def __init__(self, config):
            self.rejects = config.str("rejects", "rejects")

        def process(self, msg):
            if not msg.value:
                return weir.forward(self.rejects)
            if msg.text() == "drop":
                return weir.DROP
            return weir.Output(msg.text().upper())

    assert run(Shout, ["hi", "", "drop"], config={"rejects": "404"}) == [
        weir.Emit([weir.Output(b"HI", key=None, headers=[])]), weir.Forward("404"), weir.DROP]


def test_errors_keep_their_kind():
    @weir.plugin
    def flaky(msg):
        if msg.text() == "later":
            raise weir.Retryable("busy")
        raise weir.Fatal("bad")

    assert run(flaky, ["later", "x"]) == [weir.Fail("busy", True), weir.Fail("bad", False)]


def test_abort_outside_a_component_raises():
    @weir.plugin
    def boom(msg):
        weir.abort("no way")

    with pytest.raises(weir.Aborted):
        run(boom, ["x"])


def test_handler_is_idempotent_by_key_header_and_field():
    @weir.handler(idempotency=weir.by_key(window_ms=1000))
    def once(msg: dict, config):
        total = weir.state.get_json("total", 0) + msg["n"]
        weir.state.set_json("total", total)
        weir.log.info(f"total {total}")
        return {"total": total}

    msgs = [weir.Message({"n": 1}, key="a", timestamp_ms=t) for t in (0, 500, 1500)]
    out = run(once, msgs + [weir.Message({"n": 5}, key="b", timestamp_ms=1500)])
    assert [o.outputs[0].json()["total"] if o != weir.DROP else None for o in out] == [1, None, 2, 7]
    assert out.state.get(b"idem:a") == b"1" and ("info", "total 7") in out.logs

    @weir.handler(idempotency=weir.by_header("id"))
    def by_header(msg):
        return None

    out = run(by_header, [weir.Message("x", headers={"id": "1"}), weir.Message("x", headers={"id": "1"}), "x"])
    assert out == [weir.Emit([]), weir.DROP, weir.Emit([])]

    @weir.handler(idempotency=weir.by_field("order.id"))
    def by_field(doc: dict):
        if doc.get("fail"):
            raise weir.Retryable("try again")
        return doc

    out = run(by_field, [{"order": {"id": 7}, "fail": True}, {"order": {"id": 7}}, {"order": {"id": 7}}])
    assert out[0].retryable and out[1] == weir.KEEP and out[2] == weir.DROP, "remembered only on success"


def test_handler_class_with_state_carried_across_runs():
    @weir.handler
    class Accounts:
        idempotency = weir.by_header(weir.headers.IDEMPOTENCY_KEY)

        def __init__(self, config):
            self.currency = config.str("currency", "EUR")

        def handle(self, p: dict, meta):
            key = f"balance:{p['account']}"
            balance = weir.state.get_json(key, 0) + p["cents"]
            weir.state.set_json(key, balance)
            return {"account": p["account"], "balance_cents": balance, "currency": self.currency, "k": meta.key_str}

    state = weir.state.MemoryState()
    pay = lambda i: weir.Message({"account": "a", "cents": 5}, key="kk", headers={"weir-idempotency-key": i})  # noqa
    run(Accounts, [pay("1")], config={"currency": "978"}, state=state)
    out = run(Accounts, [pay("1"), pay("2")], config={"currency": "978"}, state=state)
    assert out[0] == weir.DROP
    assert out[1].outputs[0].json() == {"account": "a", "balance_cents": 10, "currency": "978", "k": "kk"}


def test_aggregate_windows_close_and_late_messages_drop():
    @weir.aggregate(window_ms=1000, key=weir.by_key(), emit=lambda key, w, n: f"{key}: {n} in [{w.start_ms}, {w.end_ms})")
    def count(n, msg):
        return n + 1

    m = lambda k, t: weir.Message("x", key=k, headers={"h": "v"}, timestamp_ms=t)  # noqa: E731
    out = run(count, [m("a", 10), m("b", 20), m("a", 999), m("a", 1005), m("b", 500), m("c", 2500)])
    assert out[:2] == [weir.DROP, weir.DROP] and out[2] == weir.DROP
    assert out[3] == weir.Emit([weir.Output(b"a: 2 in [0, 1000)", key="a", headers=[]),
                                weir.Output(b"b: 1 in [0, 1000)", key="b", headers=[])])
    assert out[4] == weir.DROP and out.state.get(b"agg.late") == b"1"
    assert out[5].outputs == [weir.Output(b"a: 1 in [1000, 2000)", key="a", headers=[])]
    assert out.state.get(b"agg.keys") == b'["c"]' and out.state.get(b"agg.window") == b"2000"


def test_aggregate_class_with_config_window():
    @weir.aggregate
    class Spend:
        def __init__(self, config):
            self.window_ms = config.duration_ms("window", 60_000)

        def key(self, doc, meta):
            return doc["customer"]

        def initial(self):
            return {"sum": 0}

        def add(self, acc, doc: dict):
            acc["sum"] += doc["amount"]  # changed in place: returning None keeps it

        def emit(self, key, window, acc):
            return {"customer": key, "sum": acc["sum"], "start": window.start_ms}

    docs = [weir.Message({"customer": "x", "amount": a}, timestamp_ms=t) for a, t in ((1, 0), (2, 4000), (3, 5000))]
    out = run(Spend, docs, config={"window": "5s"})
    assert out[2].outputs[0].json() == {"customer": "x", "sum": 3, "start": 0}
    with pytest.raises(weir.ConfigError, match="longer than 0"):
        run(Spend, [], config={"window": "0s"})


def test_a_module_must_register_exactly_one_plugin():
    import types

    two = types.ModuleType("two_plugins")
    exec("import weir\n@weir.filter\ndef a(m): pass\n@weir.map\ndef b(m): pass\n", two.__dict__)
    with pytest.raises(RuntimeError, match="exactly one.*two_plugins.a, two_plugins.b"):
        run(two, [])
    with pytest.raises(RuntimeError, match="found: none"):
        run(types.ModuleType("none"), [])

"""The shapes a plugin can take (decorators), adapted to one general form the runtime feeds."""

import copy
import dataclasses
import inspect
import typing

from . import _packed, state
from ._config import Config
from ._errors import Fatal, WeirError
from ._message import DROP, INHERIT, KEEP, Emit, Forward, Keep, Drop, Message, Output, to_bytes
from .json import as_text, get as get_path

DAY_MS = 86_400_000
_registry = {}  # (module, qualname) -> Definition; a component must hold exactly one


class Selector:
    """What to read from a message: its key, a header, or a JSON field (dotted path); with
    `window_ms`, how long a handled idempotency key is remembered."""

    def __init__(self, by, name=None, window_ms=DAY_MS):
        self.by, self.name, self.window_ms = by, name, window_ms

    @classmethod
    def parse(cls, what, spec, window_ms=DAY_MS):
        """`key`, `header:NAME` or `field:PATH`; `what` names the config key in errors."""
        by, _, name = spec.partition(":")
        if spec == "key" or (by in ("header", "field") and name):
            return cls(by, name or None, window_ms)
        raise Fatal(f"config key `{what}` has invalid value {spec!r}: use key, header:NAME or field:PATH")

    def select(self, msg):
        """The selected value as text, or None when the message lacks it."""
        if self.by == "key":
            return msg.key_str
        if self.by == "header":
            return msg.header(self.name)
        v = get_path(msg.json(), self.name)
        return None if v is None else as_text(v)

    def __repr__(self):
        return f"Selector({self.by!r}, {self.name!r}, window_ms={self.window_ms})"


def by_key(window_ms=DAY_MS):
    """Select the message key (idempotency: repeats of a key within `window_ms` are dropped)."""
    return Selector("key", None, window_ms)


def by_header(name, window_ms=DAY_MS):
    """Select header `name`."""
    return Selector("header", name, window_ms)


def by_field(path, window_ms=DAY_MS):
    """Select the JSON field at dotted `path` (strings as is, other values as JSON text)."""
    return Selector("field", path, window_ms)


@dataclasses.dataclass(frozen=True)
class Window:
    """A closed tumbling window: [start_ms, end_ms)."""

    start_ms: int
    end_ms: int


# --- calling user code -------------------------------------------------------------------

def _caller(fn, n):
    """Call `fn` with `n` arguments, plus the config if it takes one more positional
    parameter, plus `meta=` (the input Message) if it has a parameter so named."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return lambda args, cfg, msg: fn(*args)
    meta = any(p.name == "meta" for p in params)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "meta"]
    extra = any(p.kind == p.VAR_POSITIONAL for p in params) or len(positional) > n

    def call(args, cfg, msg):
        args = args + (cfg,) if extra else args
        return fn(*args, meta=msg) if meta else fn(*args)

    return call


_INPUTS = {"message": lambda m: m, "json": Message.json, "text": Message.text, "bytes": lambda m: m.value}


def _input_of(fn, position, explicit):
    """How to decode the input for `fn`: explicit `input=`, else the annotation of its
    parameter at `position` (dict/list → JSON, str → text, bytes → raw, a dataclass → JSON
    fields, none or Message → the Message)."""
    tp = explicit
    if tp is None:
        try:
            params = [p for p in inspect.signature(fn).parameters.values() if p.name != "meta"]
            tp = params[position].annotation if len(params) > position else None
            if isinstance(tp, str):
                tp = typing.get_type_hints(fn).get(params[position].name, tp)
        except (TypeError, ValueError, NameError, IndexError):
            tp = None
    if isinstance(tp, str) and tp in _INPUTS:
        return _INPUTS[tp]
    base = typing.get_origin(tp) or tp
    if tp in (None, inspect.Parameter.empty, Message) or tp == "Message":
        return _INPUTS["message"]
    if base is str:
        return _INPUTS["text"]
    if base is bytes:
        return _INPUTS["bytes"]
    if dataclasses.is_dataclass(tp):
        return lambda m: _dataclass_from(tp, m.json())
    if base in (dict, list, typing.Any, object, int, float, bool) or isinstance(tp, str):
        return _INPUTS["json"]
    return _INPUTS["message"]


def _dataclass_from(cls, doc):
    if not isinstance(doc, dict):
        raise Fatal(f"invalid JSON payload: expected an object for {cls.__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    try:
        return cls(**{k: v for k, v in doc.items() if k in names})
    except TypeError as e:
        raise Fatal(f"invalid JSON payload: {e}") from None


def output(value):
    """A returned value as an Output: Output as is; bytes raw; str as text; a dataclass or
    anything else as JSON. Key and headers are inherited unless the Output sets them."""
    if isinstance(value, Output):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return Output(value)


def _many(values):
    """Zero or more outputs: None is none; one Output/str/bytes/dict is one; else iterate."""
    if values is None:
        return []
    if isinstance(values, (Output, str, bytes, bytearray, memoryview, dict)) or dataclasses.is_dataclass(values):
        return [output(values)]
    return [output(v) for v in values]


def _general(result, msg):
    """What a general plugin returned, normalized."""
    if isinstance(result, (Keep, Drop, Forward)):
        return result
    if result is None:
        return DROP
    if isinstance(result, Emit):
        return [output(o) for o in result.outputs], msg
    return _many(result), msg


# --- definitions ---------------------------------------------------------------------------

_METHOD = {"plugin": "process", "filter": "filter", "map": "map", "filter_map": "filter_map",
           "flat_map": "flat_map", "route": "route", "handler": "handle", "aggregate": "add"}
_OPTIONS = {"config", "input"}
_KIND_OPTIONS = {"handler": {"idempotency"}, "aggregate": {"window_ms", "key", "time", "initial", "emit"}}


class Definition:
    """A decorated function or class of one kind, with its options."""

    def __init__(self, kind, target, options):
        unknown = set(options) - _OPTIONS - _KIND_OPTIONS.get(kind, set())
        if unknown:
            raise TypeError(f"@weir.{kind} takes no option {', '.join(sorted(unknown))}")
        self.kind, self.target, self.options = kind, target, options
        self.is_class = isinstance(target, type)
        if self.is_class and not hasattr(target, _METHOD[kind]):
            raise TypeError(f"@weir.{kind} class {target.__name__} needs a `{_METHOD[kind]}` method")
        self.name = f"{target.__module__}.{target.__qualname__}"

    def instantiate(self, config):
        """Build the plugin for `config`: a function of one Message to a normalized outcome."""
        wanted = self.options.get("config")
        cfg = config
        if wanted is not None:
            cfg = config.load(wanted) if dataclasses.is_dataclass(wanted) else wanted(config)
        if self.is_class:
            try:
                takes = len(inspect.signature(self.target).parameters) > 0
            except (TypeError, ValueError):
                takes = True
            obj = self.target(cfg) if takes else self.target()
            fn = getattr(obj, _METHOD[self.kind])
            position = 1 if self.kind == "aggregate" else 0
            conv = _input_of(fn, position, self.options.get("input"))
            return getattr(self, "_" + self.kind)(fn, conv, cfg, obj)
        position = 1 if self.kind == "aggregate" else 0
        conv = _input_of(self.target, position, self.options.get("input"))
        return getattr(self, "_" + self.kind)(self.target, conv, cfg, None)

    def _plugin(self, fn, conv, cfg, obj):
        call = _caller(fn, 1)
        return lambda msg: _general(call((msg,), cfg, msg), msg)

    def _filter(self, fn, conv, cfg, obj):
        call = _caller(fn, 1)
        return lambda msg: KEEP if call((msg,), cfg, msg) else DROP

    def _route(self, fn, conv, cfg, obj):
        call = _caller(fn, 1)

        def route(msg):
            topic = call((msg,), cfg, msg)
            return Forward(topic) if topic else KEEP

        return route

    def _map(self, fn, conv, cfg, obj):
        call = _caller(fn, 1)

        def map_(msg):
            out = call((conv(msg),), cfg, msg)
            if out is None:
                raise Fatal("map returned None: use @weir.filter_map to drop messages")
            return [output(out)], msg

        return map_

    def _filter_map(self, fn, conv, cfg, obj):
        call = _caller(fn, 1)

        def filter_map(msg):
            out = call((conv(msg),), cfg, msg)
            return DROP if out is None else ([output(out)], msg)

        return filter_map

    def _flat_map(self, fn, conv, cfg, obj):
        call = _caller(fn, 1)
        return lambda msg: (_many(call((conv(msg),), cfg, msg)), msg)

    def _handler(self, fn, conv, cfg, obj):
        call = _caller(fn, 1)
        idem = self.options.get("idempotency", getattr(obj, "idempotency", None))
        if callable(idem) and not isinstance(idem, Selector):
            idem = idem()

        def handle(msg):
            once = None
            if idem is not None:
                found = idem.select(msg)
                if found is not None:
                    once = "idem:" + found
                    if state.get(once) is not None:
                        return DROP
            outs = _many(call((conv(msg),), cfg, msg))
            # Remembered only on success: a failed attempt may be retried.
            if once is not None:
                state.set(once, b"1", idem.window_ms)
            return outs, msg

        return handle

    def _aggregate(self, fn, conv, cfg, obj):
        o = self.options
        pick = lambda name, default=None: o.get(name, getattr(obj, name, default))  # noqa: E731
        length = pick("window_ms")
        if callable(length):
            length = length() if obj is not None and not self.options.get("window_ms") else length(cfg)
        if not isinstance(length, int) or length <= 0:
            raise Fatal("the aggregate's window must be longer than 0")
        add = _caller(fn, 2)
        key_of = pick("key", by_key())
        key_call = None if isinstance(key_of, Selector) else _caller(key_of, 1)
        time_of = pick("time")
        time_call = None if time_of is None else _caller(time_of, 1)
        initial = pick("initial", 0)
        emit_of = pick("emit")
        emit_call = None if emit_of is None else _caller(emit_of, 3)

        def fresh():
            return initial() if callable(initial) else copy.deepcopy(initial)

        def close(window):
            outs = []
            for key in state.get_json("agg.keys", []):
                slot = "agg.acc:" + key
                raw = state.get(slot)
                acc = fresh() if raw is None else state.get_json(slot)
                state.delete(slot)
                result = acc if emit_call is None else emit_call((key, window, acc), cfg, None)
                out = output(result)
                outs.append(Output(out.value, to=out.topic,
                                   key=key.encode() if out.key is INHERIT else out.key,
                                   headers=[] if out.headers is INHERIT else out.headers))
            state.delete("agg.keys")
            return outs

        def aggregate(msg):
            item = conv(msg)
            time = msg.timestamp_ms if time_call is None else time_call((item,), cfg, msg)
            window = time - time % length
            if key_call is None:
                key = key_of.select(msg) or ""
            else:
                key = str(key_call((item,), cfg, msg))
            outputs = []
            open_ = state.get_json("agg.window")
            if open_ is not None and window < open_:
                state.set_json("agg.late", state.get_json("agg.late", 0) + 1)
                return DROP
            if open_ is not None and window > open_:
                outputs = close(Window(open_, open_ + length))
            state.set_json("agg.window", window)
            slot = "agg.acc:" + key
            if state.get(slot) is None:
                state.set_json("agg.keys", state.get_json("agg.keys", []) + [key])
                acc = fresh()
            else:
                acc = state.get_json(slot)
            new = add((acc, item), cfg, msg)
            # `add` may return the new accumulator, or change it in place and return None.
            state.set_json(slot, acc if new is None else new)
            return (outputs, msg) if outputs else DROP

        return aggregate


def _define(kind, target, options):
    d = Definition(kind, target, options)
    # Keyed by name: a module imported again (reload, a test run twice) replaces its own.
    _registry[(target.__module__, target.__qualname__)] = d
    target.__weir__ = d
    return target


def _decorator(kind):
    def decorate(target=None, /, **options):
        if target is None:
            return lambda t: _define(kind, t, options)
        return _define(kind, target, options)

    decorate.__name__ = decorate.__qualname__ = kind
    decorate.__doc__ = f"Register a function `(input, config)` or a class as this module's {kind} plugin."
    return decorate


plugin = _decorator("plugin")
filter = _decorator("filter")
map = _decorator("map")
filter_map = _decorator("filter_map")
flat_map = _decorator("flat_map")
route = _decorator("route")
handler = _decorator("handler")
aggregate = _decorator("aggregate")


def _one(found, where):
    if len(found) != 1:
        names = ", ".join(d.name for d in found) or "none"
        raise RuntimeError(f"{where} must register exactly one weir plugin (decorate it with @weir.filter, "
                           f"@weir.map, ...); found: {names}")
    return found[0]


def the_one():
    """The one registered plugin of a component build (an error if none or several)."""
    return _one(list(_registry.values()), "a component")


def definition_of(thing):
    """The Definition of a decorated function/class, or of the one plugin a module registers."""
    d = getattr(thing, "__weir__", None)
    if isinstance(d, Definition):
        return d
    name = getattr(thing, "__name__", None)
    if isinstance(thing, type(typing)):
        return _one([d for (m, _), d in _registry.items() if m == name], f"module {name}")
    raise TypeError(f"{thing!r} is not a weir plugin (decorate it with @weir.filter, @weir.map, ...)")


# --- the runtime: one packed batch in, one packed result out -------------------------------

class Runtime:
    """A plugin instance behind the `init` / `process` exports."""

    def __init__(self, definition):
        self.definition, self.step = definition, None

    def init(self, pairs):
        """Build the plugin; the error text (naming the bad key) or None."""
        try:
            self.step = self.definition.instantiate(Config(pairs))
        except WeirError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 - any init failure must reach the host as text
            return f"{type(e).__name__}: {e}"
        return None

    def process(self, batch):
        try:
            view = _packed.BatchView(batch)
        except _packed.PackError:
            # Unreadable: no outcomes, which the host refuses and reports.
            return _packed.ResultWriter().finish()
        out, step = _packed.ResultWriter(), self.step
        for i in range(view.count):
            msg = Message._packed(view, i)
            if step is None:
                out.fail("process called before init succeeded", False)
                continue
            try:
                _write(out, msg, step(msg))
            except WeirError as e:
                out.fail(str(e), e.retryable)
            except Exception as e:  # noqa: BLE001 - a bug fails its message, not the batch
                out.fail(f"{type(e).__name__}: {e}", False)
        return out.finish()


def _write(out, msg, result):
    if isinstance(result, Keep):
        return out.keep()
    if isinstance(result, Drop):
        return out.drop()
    if isinstance(result, Forward):
        if not isinstance(result.topic, str):
            raise Fatal(f"a topic must be text, not {type(result.topic).__name__}")
        return out.forward(result.topic)
    outputs, source = result
    records = [_record(o, source) for o in outputs]
    if len(records) == 1 and _unchanged(outputs[0], records[0], msg):
        return out.keep() if records[0][4] is None else out.forward(records[0][4])
    out.emit(records)


def _record(o, source):
    """(key, value, header block, header count, topic), inherited pieces copied raw."""
    if not isinstance(o, Output):
        o = output(o)
    if o.topic is not None and not isinstance(o.topic, str):
        raise Fatal(f"a topic must be text, not {type(o.topic).__name__}")
    key = source._raw_key() if o.key is INHERIT else o.key
    block, count = source._header_block() if o.headers is INHERIT else _packed.encode_headers(o.headers)
    return key, to_bytes(o.value), block, count, o.topic


def _unchanged(o, record, msg):
    """Whether the one output is the input as it came: then only a code crosses back."""
    key, value, block, count, _ = record
    if value != msg._raw_value():
        return False
    if o.key is not INHERIT and key != msg._raw_key():
        return False
    if o.headers is not INHERIT:
        mine, n = msg._header_block()
        return n == count and mine == block
    return True

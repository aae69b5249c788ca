"""Run a plugin without a server, through the same packed batch and result as a component."""

from . import _kinds, _packed, log, state
from ._errors import ConfigError
from ._message import DROP, KEEP, Emit, Fail, Forward, Message, Output
from .state import MemoryState


class Run(list):
    """The outcomes of a run, one per input in order, with the `state` and `logs` it left."""

    state = None
    logs = None


def _message(item, offset):
    if isinstance(item, Message):
        return item
    return Message(item, offset=offset)


def run(plugin, inputs, config=None, state=None, topic="test"):
    """Run `plugin` (a decorated function or class, or the module registering it) over
    `inputs` (Messages, or payloads: bytes, str, or JSON values) as one batch. Returns a
    `Run`: a list of Keep/Drop/Emit/Forward/Fail outcomes, with `.state` (a MemoryState; pass
    one to carry state across runs) and `.logs` [(level, message)]. A config that `init`
    refuses raises ConfigError with the plugin's text."""
    runtime = _kinds.Runtime(_kinds.definition_of(plugin))
    memory = state if state is not None else MemoryState()
    logs = []
    saved = (_state_module.backend, log.backend)
    _state_module.backend, log.backend = memory, lambda level, message: logs.append((level, message))
    try:
        pairs = list((config or {}).items()) if isinstance(config, dict) or config is None else list(config)
        err = runtime.init(pairs)
        if err is not None:
            raise ConfigError(err)
        messages = [_message(item, i) for i, item in enumerate(inputs)]
        result = Run()
        # One batch per distinct timestamp run keeps TTLs honest: state's clock is the
        # message time, as if each message were processed when it was appended.
        for group in _by_time(messages):
            memory.now_ms = group[0].timestamp_ms
            batch = _packed.encode_batch(topic, [
                (m.offset, m.timestamp_ms, m.partition, m.key, m.value, m.headers.pairs) for m in group])
            result.extend(_outcome(kind, payload)
                          for kind, payload in _packed.decode_result(runtime.process(batch), len(group)))
    finally:
        _state_module.backend, log.backend = saved
    result.state, result.logs = memory, logs
    return result


_state_module = state


def _by_time(messages):
    groups = []
    for m in messages:
        if groups and groups[-1][-1].timestamp_ms == m.timestamp_ms:
            groups[-1].append(m)
        else:
            groups.append([m])
    return groups


def _outcome(kind, payload):
    if kind == _packed.KEEP:
        return KEEP
    if kind == _packed.DROP:
        return DROP
    if kind == _packed.FORWARD:
        return Forward(payload)
    if kind == _packed.FAIL:
        return Fail(*payload)
    return Emit([Output(value, key=key, headers=headers, to=topic) for key, value, headers, topic in payload])

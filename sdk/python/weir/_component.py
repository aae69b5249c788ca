"""The `weir:plugin@0.2.0` exports over componentize-py's bindings, for the one registered plugin."""

from componentize_py_types import Err
from wit_world import WitWorld as _World
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports import types as _types

from . import _errors, _kinds, log, state
from ._errors import Fatal

_LEVELS = {"trace": _types.Level.TRACE, "debug": _types.Level.DEBUG, "info": _types.Level.INFO,
           "warn": _types.Level.WARN, "error": _types.Level.ERROR}


class _HostState:
    """State through the host: buffered there and committed with the batch."""

    get = staticmethod(_state.get)
    delete = staticmethod(_state.delete)

    @staticmethod
    def set(key, value, ttl_ms=None):
        try:
            _state.set(key, value, ttl_ms)
        except Err as e:
            # Retrying the same write cannot fit it under the limit.
            raise Fatal(f"state limit exceeded: {getattr(e.value, 'value', e.value)}") from None


_errors.IN_COMPONENT = True
state.backend = _HostState()
log.backend = lambda level, message: _log.write(_LEVELS[level], message)

# Resolved at build time (componentize-py imports this module then), so a project that
# registers no plugin, or several, fails to build rather than to run.
_runtime = _kinds.Runtime(_kinds.the_one())


class WitWorld(_World):
    def init(self, config):
        err = _runtime.init(config)
        if err is not None:
            raise Err(err)

    def process(self, batch):
        return _runtime.process(batch)

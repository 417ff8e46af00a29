"""Plugins: layers nbtrt has no kernel for, written by the user with their own Numba CUDA kernels
(TensorRT's IPlugin, in Python).

A plugin is a subclass of :class:`Plugin` that names the op it implements (``op_type``, ``domain``,
``version``) and is registered with :func:`register_plugin` (a class decorator, or a call). Then:

- the ONNX frontend turns a node of an op it does not know into a plugin node when a plugin is
  registered for (op type, domain, version): the newest registered version not above the model's
  opset version of that domain; the plugin is made by ``Plugin.create(attributes)``;
- :meth:`nbtrt.Network.add_plugin` adds a plugin instance to a network; the Darknet importer makes its
  ``[region]`` layer a node of the built-in region plugin (``nbtrt/frontends/darknet_region.py``).

In the IR a plugin node is ``op == "Plugin"`` (:data:`PLUGIN_OP`) with ``domain`` the plugin's and one
attribute, ``plugin``: the instance. The passes leave it alone (no folding, no fusion): it is a step
of its own. Its output types come from ``output_types``, checked here (count, dtypes, dims), so a
plugin that returns nonsense fails at its node with a :class:`~nbtrt.errors.PluginError`.

The lifecycle, as in TensorRT:

========================  ======================================================================
``create(attrs)``         classmethod; from the ONNX node's attributes (default ``cls(**attrs)``)
``output_types(types)``   output :class:`~nbtrt.ir.TensorType` list from the input types
``configure(types, p)``   at build time with static input types and the precision; again on each
                          execution context's copy of the plugin
``workspace_size(types)`` bytes of scratch memory ``enqueue`` needs (0: none)
``initialize()``          once per execution context (its own copy, made by ``clone()``)
``enqueue(i, o, w, s)``   each inference: launch the plugin's kernels on stream ``s``
``terminate()``           when the context is closed or collected
``serialize()``           the plugin's state as bytes, stored in the engine file (default: the
                          instance's attributes as JSON)
``deserialize(data)``     classmethod; the plugin again from those bytes (at ``nbtrt.load``)
``reference(inputs)``     numpy semantics: the reference interpreter and the tests run it
========================  ======================================================================

``enqueue`` gets device arrays (Numba device arrays on a GPU, made from the context's memory with
``numba.cuda.from_cuda_array_interface``; simulator arrays backed by numpy under
``NUMBA_ENABLE_CUDASIM=1``), contiguous and shaped like the tensors, a uint8 workspace array (None
when ``workspace_size`` is 0) and a Numba stream: launch as ``kernel[grid, block, stream](...)``. On
a GPU the first run is captured into a CUDA graph, so ``enqueue`` must only launch kernels on
``stream``: no synchronization, host copies or allocations (nbtrt calls it once before the capture so
that Numba compiles the kernels outside it).
"""

from __future__ import annotations

import base64
import importlib
import json
from contextlib import contextmanager

import numpy as np

from .dtypes import NAMES
from .errors import NbtrtError, PluginError, PluginNotFoundError
from .ir import TensorType

PLUGIN_OP = "Plugin"
DEFAULT_DOMAINS = ("", "ai.onnx")
# Plugins nbtrt ships, imported on first use: (op type, domain) -> "module:class".
BUILTIN = {("Region", "nbtrt.darknet"): "nbtrt.frontends.darknet_region:RegionPlugin"}


class Plugin:
    """Base class of plugins; subclasses set ``op_type`` (and ``domain``, ``version``,
    ``num_outputs``) and implement ``output_types``, ``enqueue`` and ``reference``."""

    op_type: str = ""
    domain: str = ""
    version: int = 1
    num_outputs: int = 1

    @classmethod
    def create(cls, attrs: dict) -> "Plugin":
        """The plugin for an ONNX node's attributes (name -> value)."""
        return cls(**attrs)

    def output_types(self, input_types: list[TensorType | None]) -> list[TensorType]:
        raise NotImplementedError

    def configure(self, input_types: list[TensorType | None], precision: str) -> None:
        """Build time (and per context): the static input types and the engine's precision."""

    def workspace_size(self, input_types: list[TensorType | None]) -> int:
        return 0

    def initialize(self) -> None:
        """Once per execution context, before its first inference."""

    def terminate(self) -> None:
        """Once per execution context, when it is closed."""

    def enqueue(self, inputs: list, outputs: list, workspace, stream) -> None:
        raise NotImplementedError

    def reference(self, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """The plugin's state; by default its attributes as JSON (numbers, strings, lists, dicts):
        override this and ``deserialize`` for any other state."""
        try:
            return json.dumps(vars(self), sort_keys=True).encode()
        except TypeError as e:
            raise TypeError(f"the default serialize stores the attributes as JSON ({e}): override serialize "
                            "and deserialize") from None

    @classmethod
    def deserialize(cls, data: bytes) -> "Plugin":
        """The plugin from ``serialize()``'s bytes (by default: the attributes, without calling __init__)."""
        plugin = cls.__new__(cls)
        plugin.__dict__.update(json.loads(data) if data else {})
        return plugin

    def clone(self) -> "Plugin":
        """A fresh copy (each execution context runs its own): by default through serialize."""
        return type(self).deserialize(self.serialize())

    @classmethod
    def key(cls) -> tuple[str, str, int]:
        return cls.op_type, normal_domain(cls.domain), int(cls.version)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {describe(*self.key())}>"


def normal_domain(domain: str) -> str:
    return "" if domain in DEFAULT_DOMAINS else domain


def describe(op_type: str, domain: str, version) -> str:
    return f"{domain + '::' if domain else ''}{op_type} version {version if version is not None else '(any)'}"


# -- the registry -------------------------------------------------------------------------------------
_REGISTRY: dict[tuple[str, str, int], type[Plugin]] = {}


def register_plugin(cls: type[Plugin] | None = None, *, replace: bool = False):
    """Register a :class:`Plugin` subclass under its (op type, domain, version); usable as a decorator.

    Registering another class under a taken key is an error unless ``replace`` (the same class again,
    or one of the same module and name, as after a reload, replaces it quietly)."""
    def register(c):
        if not (isinstance(c, type) and issubclass(c, Plugin)):
            raise PluginError(f"register_plugin takes a Plugin subclass, not {c!r}")
        if not isinstance(c.op_type, str) or not c.op_type or not isinstance(c.version, int) or c.version < 1:
            raise PluginError(f"plugin class {c.__name__} needs an op_type and a version >= 1 "
                              f"(has {c.op_type!r}, {c.version!r})")
        old = _REGISTRY.get(c.key())
        same = old is not None and (old.__module__, old.__qualname__) == (c.__module__, c.__qualname__)
        if old is not None and not (same or replace):
            raise PluginError(f"a plugin is already registered for {describe(*c.key())}: {old.__qualname__} "
                              f"(pass replace=True to replace it)")
        _REGISTRY[c.key()] = c
        return c
    return register if cls is None else register(cls)


def unregister_plugin(op_type: str, domain: str = "", version: int = 1) -> None:
    _REGISTRY.pop((op_type, normal_domain(domain), version), None)


def registered_plugins() -> list[tuple[str, str, int]]:
    return sorted(_REGISTRY)


def find_plugin(op_type: str, domain: str = "", version: int | None = None, exact: bool = False):
    """The plugin class for ``op_type`` in ``domain``: the newest version not above ``version`` (any
    when None), or exactly ``version`` when ``exact``; None if there is none."""
    domain = normal_domain(domain)
    if (op_type, domain) in BUILTIN and not any(k[:2] == (op_type, domain) for k in _REGISTRY):
        module, name = BUILTIN[(op_type, domain)].split(":")
        register_plugin(getattr(importlib.import_module(module), name))
    versions = [v for (o, d, v) in _REGISTRY if (o, d) == (op_type, domain)
                and (version is None or (v == version if exact else v <= version))]
    return _REGISTRY[(op_type, domain, max(versions))] if versions else None


def not_found(node_name: str, op_type: str, domain: str, version, heading: str | None = None):
    """The PluginNotFoundError for one node, listing the registered versions of the op if any."""
    domain = normal_domain(domain)
    others = sorted(v for (o, d, v) in _REGISTRY if (o, d) == (op_type, domain))
    extra = f" (registered versions: {', '.join(map(str, others))})" if others else ""
    return PluginNotFoundError([(node_name, f"{describe(op_type, domain, version)}: no plugin registered{extra}")],
                               heading)


def create_plugin(node_name: str, op_type: str, domain: str, version: int | None, attrs: dict) -> Plugin:
    """The plugin for an ONNX node (frontends): PluginNotFoundError or PluginError naming the node."""
    cls = find_plugin(op_type, domain, version)
    if cls is None:
        raise not_found(node_name, op_type, domain, version)
    return call(node_name, cls, "create", lambda: cls.create(dict(attrs)), Plugin)


# -- calling plugin code ------------------------------------------------------------------------------
@contextmanager
def guarded(node_name: str, plugin, what: str):
    """Turn an exception in plugin code into a PluginError naming the node and the plugin."""
    try:
        yield
    except NbtrtError:
        raise
    except Exception as e:
        name = plugin.__name__ if isinstance(plugin, type) else type(plugin).__name__
        raise PluginError(f"node {node_name!r} (plugin {name}, {describe(*plugin.key())}): {what} raised "
                          f"{type(e).__name__}: {e}") from e


def call(node_name: str, plugin, what: str, fn, returns=None):
    """``fn()`` under :func:`guarded`; checks the result is a ``returns`` when given."""
    with guarded(node_name, plugin, what):
        result = fn()
    if returns is not None and not isinstance(result, returns):
        want = " or ".join(t.__name__ for t in (returns if isinstance(returns, tuple) else (returns,)))
        fail(node_name, plugin, f"{what} returned a {type(result).__name__}, not a {want}")
    return result


def fail(node_name: str, plugin, message: str):
    name = plugin.__name__ if isinstance(plugin, type) else type(plugin).__name__
    raise PluginError(f"node {node_name!r} (plugin {name}, {describe(*plugin.key())}): {message}")


def node_plugin(node) -> Plugin:
    plugin = node.attrs.get("plugin")
    if not isinstance(plugin, Plugin):
        raise PluginError(f"node {node.name!r} ({PLUGIN_OP}): attribute 'plugin' is {plugin!r}, not a Plugin")
    return plugin


def input_types(node) -> list[TensorType | None]:
    return [None if v is None else v.type for v in node.inputs]


def infer_types(node) -> list[TensorType]:
    """The checked output types of a plugin node (the op schema's inference rule)."""
    plugin = node_plugin(node)
    types = call(node.name, plugin, "output_types", lambda: plugin.output_types(input_types(node)))
    if not isinstance(types, (list, tuple)):
        fail(node.name, plugin, f"output_types returned a {type(types).__name__}, not a list of TensorType")
    if len(types) != plugin.num_outputs or len(types) != len(node.outputs):
        fail(node.name, plugin, f"output_types returned {len(types)} types; the plugin has num_outputs="
                                f"{plugin.num_outputs} and the node {len(node.outputs)} outputs")
    for i, t in enumerate(types):
        problem = _type_problem(t)
        if problem:
            fail(node.name, plugin, f"output_types gave output {i} {problem}")
    return [TensorType(t.dtype, tuple(t.shape)) for t in types]


def _type_problem(t) -> str | None:
    if not isinstance(t, TensorType):
        return f"as a {type(t).__name__}, not a TensorType"
    if t.dtype not in NAMES:
        return f"the unknown dtype {t.dtype!r}"
    if not isinstance(t.shape, (tuple, list)):
        return f"no shape ({t.shape!r}): plugins must give the rank"
    for d in t.shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer, str)) or (not isinstance(d, str) and d < 0):
            return f"a bad dimension {d!r} in shape {list(t.shape)}"
    return None


def run_reference(node, *args) -> list[np.ndarray]:
    """The reference interpreter's kernel for plugin nodes: the plugin's numpy ``reference``."""
    plugin = node_plugin(node)
    out = call(node.name, plugin, "reference", lambda: plugin.reference(list(args)), (list, tuple))
    if len(out) != len(node.outputs):
        fail(node.name, plugin, f"reference returned {len(out)} arrays for {len(node.outputs)} outputs")
    return list(out)


# -- engine files -------------------------------------------------------------------------------------
def encode_state(node) -> dict:
    """The JSON form of a plugin node's plugin: its key and serialized state."""
    plugin = node_plugin(node)
    data = call(node.name, plugin, "serialize", plugin.serialize, (bytes, bytearray))
    op, domain, version = plugin.key()
    return {"op": op, "domain": domain, "version": version, "data": base64.b64encode(bytes(data)).decode("ascii")}


def decode_state(doc: dict, node_name: str, where: str | None = None) -> Plugin:
    """The plugin again (an exactly matching registered version deserializes it)."""
    op, domain, version = doc["op"], doc["domain"], doc["version"]
    if not (isinstance(op, str) and isinstance(domain, str) and isinstance(version, int)):
        raise ValueError(f"malformed plugin record of node {node_name!r}")
    cls = find_plugin(op, domain, version, exact=True)
    if cls is None:
        heading = f"{where or 'the engine'} needs a plugin that is not registered (register it before loading)"
        raise not_found(node_name, op, domain, version, heading)
    data = base64.b64decode(doc["data"], validate=True)
    return call(node_name, cls, "deserialize", lambda: cls.deserialize(data), cls)


def load_plugins(sources) -> None:
    """Import each module name or ``.py`` file path in ``sources`` (they register their plugins)."""
    import importlib.util
    import os
    for source in sources:
        try:
            if source.endswith(".py"):
                name = "nbtrt_plugins_" + "".join(c if c.isalnum() else "_" for c in os.path.abspath(source))
                spec = importlib.util.spec_from_file_location(name, source)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                importlib.import_module(source)
        except NbtrtError:
            raise
        except Exception as e:  # a missing file or module, or an error in it
            raise PluginError(f"cannot load plugins from {source!r}: {type(e).__name__}: {e}") from e

"""The schema of plugin nodes (``op == "Plugin"``, see :mod:`nbtrt.plugins`): any number of inputs
and outputs, one attribute (the plugin instance), types from the plugin's checked ``output_types``."""

from __future__ import annotations

from .schema import REQUIRED, OpSchema


def _infer(node):
    from ..plugins import infer_types
    return infer_types(node)


SCHEMAS = {"Plugin": OpSchema("Plugin", _infer, inputs=(0, None), outputs=(1, 1 << 16), attrs={"plugin": REQUIRED})}

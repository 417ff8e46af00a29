"""Code generation: one template family per kernel kind, each emitting readable Numba CUDA source.

``FAMILIES`` maps a kernel kind (groups.kernel_kind) to its template module; a template module has
``emit(node, outputs, inputs, tactic) -> KernelSpec``, its tactic space ``TACTICS`` and ``DEFAULT``.
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..groups import kernel_kind
from ..ir import Node
from . import copy, eltwise, pad, resize
from . import norm, pool, reduce, softmax
from . import conv, conv_transpose, gemm
from .kernel import KernelSpec, TensorArg

FAMILIES = {
    "eltwise": eltwise,
    "conv": conv,
    "conv_transpose": conv_transpose,
    "gemm": gemm,
    "pool": pool,
    "lrn": norm,
    "softmax": softmax,
    "norm": norm,
    "reduce": reduce,
    "copy": copy,
    "pad": pad,
    "resize": resize,
}


def generate(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    kind = kernel_kind(node)
    family = FAMILIES.get(kind)
    if family is None:
        raise UnsupportedOpError([(node.name, f"{node.op} (no {kind} kernel template yet)")])
    return family.emit(node, outputs, inputs, tactic)


__all__ = ["FAMILIES", "generate", "KernelSpec", "TensorArg"]

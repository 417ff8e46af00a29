"""Code generation: one template family per kernel kind, each emitting readable Numba CUDA source.

``FAMILIES`` maps a kernel kind (groups.kernel_kind) to its template module; a template module has
``emit(node, outputs, inputs, tactic) -> KernelSpec``, its tactic space ``TACTICS`` and ``DEFAULT``.

``FLOAT16`` lists the families whose kernels take float16 tensors (storage: widened to float32 on load,
rounded on store) in any mix with float32 ones; ``passes/precision.py`` gives the others float32 only.
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..groups import kernel_kind
from ..ir import Node
from . import copy, eltwise, pad, resize, space_to_depth
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
    "space_to_depth": space_to_depth,
}
FLOAT16 = frozenset({"eltwise", "conv", "conv_transpose", "gemm", "pool", "lrn", "softmax", "norm", "reduce", "copy",
                     "pad", "resize", "space_to_depth"})


def supports_float16(kind: str | None) -> bool:
    """Whether the kernels of family ``kind`` read and write float16 tensors (computing in float32)."""
    return kind in FLOAT16


def generate(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    kind = kernel_kind(node)
    family = FAMILIES.get(kind)
    if family is None:
        raise UnsupportedOpError([(node.name, f"{node.op} (no {kind} kernel template yet)")])
    return family.emit(node, outputs, inputs, tactic)


__all__ = ["FAMILIES", "FLOAT16", "generate", "supports_float16", "KernelSpec", "TensorArg"]

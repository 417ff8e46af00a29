"""ConvTranspose kernels (``nbtrt.conv_transpose`` groups): the gather form.

Each thread owns one output element (n, m, o) and sums the input positions that scatter into it:
input i contributes through kernel tap j when ``o + crop = i·s + j·d`` (crop = the begin pad; a
negative crop, i.e. an output larger than the full one, just leaves those positions with no taps),
i.e. ``i = (o + crop − j·d) / s`` must be a whole number in [0, size). With groups, output channel m of
group z = m // Mg reads input channels z·Cg .. z·Cg + Cg − 1 and weights W[z·Cg + c, m − z·Mg, j].
output_padding only lengthens the output (those positions get no taps beyond the input's end).
The epilogue runs on the sum before the store (see ``conv_direct.py``).

Tactic space: threads per block.
"""

from __future__ import annotations

from ..errors import UnsupportedOpError
from ..ir import Node
from . import conv_direct
from .conv_geom import check_float32, geometry
from .kernel import KernelSpec, TensorArg, header, identifier

TACTICS = [{"threads": t} for t in (64, 128, 256)]
DEFAULT = {"threads": 128}


def valid(node: Node, tactic: dict, outputs=None, inputs=None) -> bool:
    return 32 <= tactic.get("threads", 0) <= 1024


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    check_float32(node, outputs, inputs)
    tactic = dict(tactic or DEFAULT)
    if not valid(node, tactic):
        raise UnsupportedOpError([(node.name, f"conv_transpose tactic {tactic}")])
    g = geometry(node, inputs)
    name = "conv_transpose_" + identifier(node.name)
    used = [a for a in inputs if a is not None]
    params = [o.param for o in outputs] + [a.param for a in used]
    lines = header("conv_transpose", node, tactic, outputs, used)
    lines.append(f"# group {g.groups}, kernel {list(g.kernel)}, strides {list(g.strides)}, crops {list(g.pads)}, "
                 f"dilations {list(g.dilations)}")
    body, grid, block = conv_direct.kernel(name, node, g, outputs, inputs, params, tactic["threads"], transpose=True)
    return KernelSpec(name, "\n".join(lines + body) + "\n", params, grid, block,
                      [o.dtype for o in outputs] + [a.dtype for a in used], tactic)

"""Element-wise kernels: one thread per output element (grid-stride loop), operands broadcast.

Covers ``nbtrt.eltwise`` groups (a program over the node's inputs), copy groups (a single Identity
step, e.g. writing a tensor into its slice of a concat buffer) and plain element-wise ops. Every
operand is read at the output coordinates through its own strides (size-1 dims read index 0), so
broadcasting, channel slices and strided outputs need no special cases. Float operands compute in
``kernel.compute_dtype`` (float16 ones are widened to float32 on load, the result rounded on store).

Tactic space: threads per block.
"""

from __future__ import annotations

from ..groups import Step, is_group
from ..ir import Node
from . import epilogue
from .kernel import (FLOATS, KernelSpec, TensorArg, compute_dtype, header, identifier, indent, index_of, load, store,
                     element_order, unravel)

TACTICS = [{"threads": t} for t in (128, 256, 512)]
DEFAULT = {"threads": 256}
MAX_BLOCKS = 132 * 32


def program_of(node: Node):
    """The node's element-wise program (a plain op is a one-step program over its inputs)."""
    if is_group(node):
        return node.attrs["epilogues"][0]
    args = tuple(f"in{k}" for k, v in enumerate(node.inputs) if v is not None)
    return (Step(node.op, args, tuple(sorted(node.attrs.items()))),)


def emit(node: Node, outputs: list[TensorArg], inputs: list[TensorArg | None], tactic=None) -> KernelSpec:
    tactic = dict(tactic or DEFAULT)
    out = outputs[0]
    n, shape = out.numel, out.shape
    coords = [f"c{k}" for k in range(len(shape))]
    floats = [a.dtype for a in inputs if a is not None and a.dtype in FLOATS]
    cd = compute_dtype(*floats) if floats else compute_dtype(out.dtype)
    fetch = lambda k: load(inputs[k], index_of(inputs[k], shape, coords), cd)
    body, result = epilogue.emit(program_of(node), None, fetch, cd)
    name = "eltwise_" + identifier(node.name)
    params = [out.param] + [a.param for a in inputs if a is not None]
    lines = header("eltwise", node, tactic, outputs, [a for a in inputs if a is not None])
    lines += [f"def {name}({', '.join(params)}):",
              "    i = cuda.grid(1)",
              "    step = cuda.gridsize(1)",
              f"    while i < {n}:"]
    lines += indent(unravel("i", shape, order=element_order(out)) + body
                    + [store(out, index_of(out, shape, coords), result, cd), "i += step"], 2)
    threads = tactic["threads"]
    blocks = max(1, min(-(-n // threads), MAX_BLOCKS))
    return KernelSpec(name, "\n".join(lines) + "\n", params, (blocks, 1, 1), (threads, 1, 1),
                      [out.dtype] + [a.dtype for a in inputs if a is not None], tactic)

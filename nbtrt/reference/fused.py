"""numpy semantics of the fused groups (see groups.py): the anchor op, then each output's slice of
the anchor's channels through that output's epilogue program."""

from __future__ import annotations

import numpy as np

from ..groups import GROUP_PREFIX, KIND_OF_BASE, Program
from ..ir import Node


def evaluate(program: Program, acc, inputs, kernels) -> np.ndarray:
    """Run an epilogue program on ``acc`` with node inputs ``inputs``."""
    env = {"acc": acc}
    env.update({f"in{k}": x for k, x in enumerate(inputs)})
    out = acc
    for j, step in enumerate(program):
        stub = Node(step.op, [], [], dict(step.attrs), name=step.op)
        out = kernels[step.op](stub, *(env[a] for a in step.args))
        env[f"s{j}"] = out
    return out


def make_kernels(kernels: dict) -> dict:
    """Kernels for every ``nbtrt.<kind>`` op, built on the plain-op ``kernels``."""

    def run_group(node: Node, *inputs):
        a = node.attrs
        acc = None
        if a["base"] is not None:
            base = Node(a["base"], [], [], a["base_attrs"], name=node.name)
            acc = kernels[a["base"]](base, *inputs[:a["n_base"]])
            acc = acc[0] if isinstance(acc, tuple) else acc
        outs, offset = [], 0
        for i, program in enumerate(a["epilogues"]):
            part = acc
            if len(a["epilogues"]) > 1:
                part = acc[:, offset:offset + a["splits"][i]]
                offset += a["splits"][i]
            outs.append(evaluate(program, part, inputs, kernels))
        return tuple(outs)

    return {GROUP_PREFIX + kind: run_group for kind in set(KIND_OF_BASE.values())}

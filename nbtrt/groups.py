"""Fused groups: the nodes the build pipeline produces and code generation consumes.

A fused group is an IR node whose op is ``nbtrt.<kind>`` (``conv``, ``conv_transpose``, ``gemm``,
``pool``, ``eltwise``). Its attributes say everything a kernel template needs:

``base``       the anchor op ("Conv", "Gemm", "MaxPool", ...; None for a pure element-wise group)
``base_attrs`` the anchor op's attributes (complete, as the op schema fills them)
``n_base``     how many leading node inputs belong to the anchor op (x, W for a conv)
``splits``     output-channel counts, one per output: a horizontally merged conv has several outputs,
               each a slice [offset, offset + split) of the anchor's channels (axis 1)
``epilogues``  one :data:`Program` per output, applied to that output's slice of the anchor's result
``sources``    the ONNX node names fused into the group

A :data:`Program` is a tuple of :class:`Step` in SSA form over the operands ``acc`` (the anchor's
result), ``in<k>`` (node input k: a bias or scale constant shaped to broadcast, or a residual tensor)
and ``s<j>`` (step j's result). The result is the last step's value (``acc`` when empty). Steps use
the element-wise ops of ``ops/elementwise.py`` with their ONNX semantics, so the reference can
evaluate them with its own kernels and code generation can emit them as expressions.

Nodes that stay plain ONNX ops are single-op kernels, except the views in :data:`VIEW_OPS` and
Concats marked ``in_place`` (each producer writes into its slice of the concat buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Node

GROUP_PREFIX = "nbtrt."
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
KIND_OF_BASE = {"Conv": "conv", "ConvTranspose": "conv_transpose", "Gemm": "gemm", "MatMul": "gemm",
                "MaxPool": "pool", "AveragePool": "pool", "GlobalAveragePool": "pool",
                "GlobalMaxPool": "pool", None: "eltwise"}
KIND_OF_OP = {"MaxPool": "pool", "AveragePool": "pool", "GlobalAveragePool": "pool", "GlobalMaxPool": "pool",
              "LRN": "lrn", "Softmax": "softmax", "LogSoftmax": "softmax", "BatchNormalization": "norm",
              "InstanceNormalization": "norm", "LayerNormalization": "norm", "ReduceMean": "reduce",
              "ReduceSum": "reduce", "ReduceMax": "reduce", "Transpose": "copy", "Concat": "copy",
              "Split": "copy", "Slice": "copy", "Gather": "copy", "Expand": "copy", "Pad": "pad",
              "SpaceToDepth": "space_to_depth", "Resize": "resize", "Cast": "eltwise", "Where": "eltwise",
              "Plugin": "plugin"}  # a plugin node (nbtrt/plugins.py): its own kernels, run by the context


@dataclass(frozen=True)
class Step:
    """One element-wise op of an epilogue program: ``op(*args)`` with ``attrs``."""

    op: str
    args: tuple[str, ...]
    attrs: tuple[tuple[str, object], ...] = ()

    def __str__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.attrs)
        return f"{self.op}({', '.join(self.args)}{extra})"


Program = tuple[Step, ...]


def describe(program: Program) -> str:
    """A readable one-line form, e.g. ``s0 = Add(acc, in2); s1 = Relu(s0)``."""
    return "; ".join(f"s{j} = {step}" for j, step in enumerate(program)) or "acc"


def is_group(node: Node) -> bool:
    return node.op.startswith(GROUP_PREFIX)


def sources(node: Node) -> tuple[str, ...]:
    """The ONNX node names behind ``node`` (its own name for an unfused node)."""
    return tuple(node.attrs.get("sources", (node.name,))) if is_group(node) else (node.name,)


def is_view(node: Node) -> bool:
    """A node that moves no data: its output aliases its input (or, for an in-place Concat, its
    inputs alias slices of its output)."""
    return node.op in VIEW_OPS or (node.op == "Concat" and node.attrs.get("in_place", False))


def kernel_kind(node: Node) -> str | None:
    """The kernel family of ``node``; None for a view (no kernel)."""
    if is_view(node):
        return None
    if is_group(node):
        return node.op[len(GROUP_PREFIX):]
    return KIND_OF_OP.get(node.op, "eltwise")


def group_attrs(base: str | None, base_attrs: dict, n_base: int, splits: tuple[int, ...],
                epilogues: tuple[Program, ...], sources: tuple[str, ...]) -> dict:
    return {"base": base, "base_attrs": dict(base_attrs), "n_base": n_base, "splits": tuple(splits),
            "epilogues": tuple(epilogues), "sources": tuple(sources)}


def group_op(base: str | None) -> str:
    return GROUP_PREFIX + KIND_OF_BASE[base]

"""Schemas of the ops that only re-view or rearrange their input: Reshape, Flatten, Squeeze, Unsqueeze,
Transpose, SpaceToDepth.

Semantics are the latest ONNX opset's:

- ``Reshape(data, shape)``: a ``0`` in ``shape`` copies the input dim at that index (unless
  ``allowzero=1``, where it means a zero-size dim), one ``-1`` is inferred from the element count.
  With symbolic dims the inference cancels symbols: ``[N,512,1,1]`` reshaped to ``[0,-1]`` is ``[N,512]``.
- ``Flatten(input){axis}``: ``[d0..d(axis-1), d(axis)..]`` -> ``[prod(d[:axis]), prod(d[axis:])]``,
  ``axis`` in ``[-r, r]``.
- ``Squeeze(data, axes?)``: removes the listed size-1 dims, or every static size-1 dim without ``axes``
  (the output rank is unknown when a dim is symbolic: a batch "N" may be 1 at run time).
- ``Unsqueeze(data, axes)``: inserts size-1 dims at ``axes``, which index the *output*.
- ``Transpose(data){perm}``: ``out[i] = in[perm[i]]``; no ``perm`` reverses the dims.
- ``SpaceToDepth(input){blocksize b, mode}``: (N, C, H, W) -> (N, C·b², H/b, W/b) with
  ``out[n, (i·b + j)·C + c, h, w] = in[n, c, h·b + i, w·b + j]`` (mode "DCR", the default; "CRD":
  channel ``c·b² + i·b + j``); H and W must be multiples of b.
  ``passes/space_to_depth.py`` may give its node an attribute ``channels`` (no model can: it is not
  ONNX's): that many output channels, the ones from C·b² on zero.
"""

from __future__ import annotations

from collections import Counter

from ..ir import Dim, Node, TensorType
from .schema import (REQUIRED, OpSchema, attr_error, const_ints, dim_mul, dims_product, has_input, in_type,
                     norm_axis, shape_error)


def input_len(node: Node, i: int) -> int | None:
    """The static length of 1-D input ``i`` (e.g. a shape or axes tensor), if known."""
    if not has_input(node, i):
        return None
    shape = node.inputs[i].type.shape
    if shape is None or len(shape) != 1 or not isinstance(shape[0], int):
        return None
    return shape[0]


def unknown_dims(dtype: str, rank: int | None) -> TensorType:
    """A type of known (or unknown) rank whose dims are all unknown."""
    return TensorType(dtype, None if rank is None else (None,) * rank)


def _factors(dims) -> tuple[int, Counter, bool]:
    """(product of static dims, multiset of symbolic dims, whether any dim is unknown)."""
    static, symbols, unknown = 1, Counter(), False
    for d in dims:
        if isinstance(d, int):
            static *= d
        elif isinstance(d, str):
            symbols[d] += 1
        else:
            unknown = True
    return static, symbols, unknown


def _solve_minus_one(node: Node, in_dims, out_dims) -> Dim:
    """The dim that a -1 stands for, given the other output dims."""
    in_static, in_syms, in_unknown = _factors(in_dims)
    out_static, out_syms, out_unknown = _factors(out_dims)
    if in_unknown or out_unknown or out_syms - in_syms:
        return None
    left = in_syms - out_syms
    if out_static == 0:
        if not left and in_static == 0:
            raise shape_error(node, "cannot infer the -1 dim: the other dims have zero elements")
        return None
    if left:
        return next(iter(left)) if sum(left.values()) == 1 and in_static == out_static else None
    if in_static % out_static:
        raise shape_error(node, f"cannot reshape {list(in_dims)} to {list(out_dims)} with a -1: "
                          f"{in_static} elements are not a multiple of {out_static}")
    return in_static // out_static


def reshape_dims(node: Node, in_dims, target: list[int], allowzero: int) -> tuple[Dim, ...]:
    """The output dims of Reshape of ``in_dims`` (None: unknown rank) to the constant ``target``."""
    if target.count(-1) > 1:
        raise shape_error(node, f"shape {target} has more than one -1")
    if any(v < -1 for v in target):
        raise shape_error(node, f"shape {target} has a negative dim other than -1")
    if allowzero and 0 in target and -1 in target:
        raise shape_error(node, f"shape {target} has both 0 and -1 with allowzero=1")
    out: list[Dim] = []
    for i, v in enumerate(target):
        if v == 0 and not allowzero:
            if in_dims is not None and i >= len(in_dims):
                raise shape_error(node, f"shape {target} copies dim {i} but the input has rank {len(in_dims)}")
            out.append(None if in_dims is None else in_dims[i])
        else:
            out.append(v)
    if in_dims is None:
        return tuple(None if d == -1 else d for d in out)
    if -1 in target:
        k = target.index(-1)
        out[k] = _solve_minus_one(node, in_dims, out[:k] + out[k + 1:])
        return tuple(out)
    in_static, in_syms, in_unknown = _factors(in_dims)
    out_static, out_syms, out_unknown = _factors(out)
    if not (in_unknown or out_unknown) and in_syms == out_syms and in_static != out_static:
        raise shape_error(node, f"cannot reshape {list(in_dims)} ({in_static} elements) to {target} "
                          f"({out_static} elements)")
    return tuple(out)


def _infer_reshape(node: Node) -> list[TensorType]:
    data = in_type(node)
    target = const_ints(node, 1)
    if target is None:
        return [unknown_dims(data.dtype, input_len(node, 1))]
    return [TensorType(data.dtype, reshape_dims(node, data.shape, target, node.attrs["allowzero"]))]


def flatten_axis(node: Node, rank: int) -> int:
    axis = node.attrs["axis"]
    if not -rank <= axis <= rank:
        raise attr_error(node, f"axis {axis} is out of range for rank {rank} (allowed [-{rank}, {rank}])")
    return axis + rank if axis < 0 else axis


def _infer_flatten(node: Node) -> list[TensorType]:
    data = in_type(node)
    if data.shape is None:
        return [unknown_dims(data.dtype, 2)]
    axis = flatten_axis(node, len(data.shape))
    return [TensorType(data.dtype, (dims_product(data.shape[:axis]), dims_product(data.shape[axis:])))]


def norm_axes(node: Node, axes: list[int], rank: int) -> list[int]:
    """Normalize ``axes`` against ``rank``; duplicates are an error."""
    out = [norm_axis(node, a, rank, "axis") for a in axes]
    if len(set(out)) != len(out):
        raise attr_error(node, f"axes {axes} repeat an axis")
    return out


def _infer_squeeze(node: Node) -> list[TensorType]:
    data = in_type(node)
    if not has_input(node, 1):
        if data.shape is None or not all(isinstance(d, int) for d in data.shape):
            return [unknown_dims(data.dtype, None)]
        return [TensorType(data.dtype, tuple(d for d in data.shape if d != 1))]
    axes = const_ints(node, 1)
    if data.shape is None or axes is None:
        n = input_len(node, 1)
        rank = None if data.shape is None or n is None else len(data.shape) - n
        return [unknown_dims(data.dtype, rank)]
    axes = norm_axes(node, axes, len(data.shape))
    for a in axes:
        if isinstance(data.shape[a], int) and data.shape[a] != 1:
            raise shape_error(node, f"cannot squeeze axis {a} of shape {list(data.shape)}: its size is not 1")
    return [TensorType(data.dtype, tuple(d for i, d in enumerate(data.shape) if i not in axes))]


def _infer_unsqueeze(node: Node) -> list[TensorType]:
    data = in_type(node)
    axes = const_ints(node, 1)
    if data.shape is None or axes is None:
        n = input_len(node, 1)
        rank = None if data.shape is None or n is None else len(data.shape) + n
        return [unknown_dims(data.dtype, rank)]
    rank = len(data.shape) + len(axes)
    axes = norm_axes(node, axes, rank)
    rest = iter(data.shape)
    return [TensorType(data.dtype, tuple(1 if i in axes else next(rest) for i in range(rank)))]


def transpose_perm(node: Node, rank: int) -> list[int]:
    perm = node.attrs["perm"]
    if perm is None:
        return list(range(rank))[::-1]
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise attr_error(node, f"perm {perm} is not a permutation of the {rank} input dims")
    return perm


def _infer_transpose(node: Node) -> list[TensorType]:
    data = in_type(node)
    if data.shape is None:
        perm = node.attrs["perm"]
        return [unknown_dims(data.dtype, None if perm is None else len(perm))]
    perm = transpose_perm(node, len(data.shape))
    return [TensorType(data.dtype, tuple(data.shape[p] for p in perm))]


def space_to_depth_channels(node: Node, c: Dim) -> Dim:
    """The output channel count of a SpaceToDepth reading ``c`` channels (its ``channels`` when set)."""
    block = int(node.attrs["blocksize"])
    if block < 1:
        raise attr_error(node, f"blocksize {block} is not positive")
    if node.attrs["mode"] not in ("DCR", "CRD"):
        raise attr_error(node, f"mode {node.attrs['mode']!r} is not DCR or CRD")
    return node.attrs.get("channels") or dim_mul(c, block * block)


def _infer_space_to_depth(node: Node) -> list[TensorType]:
    data = in_type(node)
    if data.shape is None:
        return [unknown_dims(data.dtype, 4)]
    if len(data.shape) != 4:
        raise shape_error(node, f"input must be (N, C, H, W), got {list(data.shape)}")
    n, c, h, w = data.shape
    block = int(node.attrs["blocksize"])
    channels = space_to_depth_channels(node, c)
    for name, d in (("height", h), ("width", w)):
        if isinstance(d, int) and d % block:
            raise shape_error(node, f"input {name} {d} is not a multiple of blocksize {block}")
    side = [d // block if isinstance(d, int) else None for d in (h, w)]
    return [TensorType(data.dtype, (n, channels, *side))]


SCHEMAS = {
    "Reshape": OpSchema("Reshape", _infer_reshape, inputs=(2, 2), attrs={"allowzero": 0}),
    "Flatten": OpSchema("Flatten", _infer_flatten, attrs={"axis": 1}),
    "Squeeze": OpSchema("Squeeze", _infer_squeeze, inputs=(1, 2)),
    "Unsqueeze": OpSchema("Unsqueeze", _infer_unsqueeze, inputs=(2, 2)),
    "Transpose": OpSchema("Transpose", _infer_transpose, attrs={"perm": None}),
    "SpaceToDepth": OpSchema("SpaceToDepth", _infer_space_to_depth, attrs={"blocksize": REQUIRED, "mode": "DCR"}),
}

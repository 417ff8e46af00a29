"""Schema of Resize (opset 19 semantics) and the output-size rule its kernel shares.

``Resize(X, roi?, scales?, sizes?){mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a,
exclude_outside, extrapolation_value, antialias, axes, keep_aspect_ratio_policy}``.

Exactly one of ``scales`` and ``sizes`` is given (an empty tensor counts as absent); they list one value
per resized axis (``axes``, default all). With ``scales``: ``out = floor(in * scale)`` and the
coordinate transform uses ``scale`` itself. With ``sizes`` and ``keep_aspect_ratio_policy=stretch``:
``out = size`` and ``scale = out / in``; with ``not_larger`` / ``not_smaller`` one scale, the min / max
of ``size / in`` over the resized axes, is used for all of them and ``out = round_half_up(scale * in)``.
"""

from __future__ import annotations

import math

from ..ir import Dim, Node, TensorType
from .reshape import norm_axes, unknown_dims
from .schema import OpSchema, attr_error, const_input, has_input, in_type, shape_error

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _check_attrs(node: Node) -> None:
    for name, allowed in (("mode", MODES), ("coordinate_transformation_mode", COORDINATE_MODES),
                          ("nearest_mode", NEAREST_MODES), ("keep_aspect_ratio_policy", ASPECT_POLICIES)):
        if node.attrs[name] not in allowed:
            raise attr_error(node, f"{name} {node.attrs[name]!r} is not one of {', '.join(allowed)}")
    if node.attrs["antialias"] and node.attrs["mode"] == "nearest":
        raise attr_error(node, "antialias applies to linear and cubic modes only")


def resize_axes(node: Node, rank: int) -> list[int]:
    axes = node.attrs["axes"]
    return list(range(rank)) if axes is None else norm_axes(node, [int(a) for a in axes], rank)


def given(node: Node, i: int) -> bool:
    """Whether optional input ``i`` (scales or sizes) is given: present and not an empty tensor."""
    if not has_input(node, i):
        return False
    shape = node.inputs[i].type.shape if node.inputs[i].type is not None else None
    return not (shape is not None and len(shape) == 1 and shape[0] == 0)


def _aspect_scale(node: Node, dims, axes, sizes) -> float | None:
    ratios = [s / dims[a] if isinstance(dims[a], int) and dims[a] else None for a, s in zip(axes, sizes)]
    if None in ratios:
        return None
    return min(ratios) if node.attrs["keep_aspect_ratio_policy"] == "not_larger" else max(ratios)


def resize_target(node: Node, dims, scales, sizes) -> tuple[list[Dim], list[float | None]]:
    """Output dims and per-dim scale factors from constant ``scales`` or ``sizes`` (lists)."""
    axes = resize_axes(node, len(dims))
    values = scales if scales is not None else sizes
    if len(values) != len(axes):
        what = "scales" if scales is not None else "sizes"
        raise shape_error(node, f"{what} {list(values)} must have one value per resized axis ({len(axes)})")
    out, factors = list(dims), [1.0] * len(dims)
    if scales is not None:
        for a, s in zip(axes, scales):
            if s <= 0:
                raise shape_error(node, f"scales {list(scales)} must be positive")
            factors[a] = float(s)
            out[a] = int(math.floor(dims[a] * float(s))) if isinstance(dims[a], int) else (
                dims[a] if s == 1 else None)
        return out, factors
    if node.attrs["keep_aspect_ratio_policy"] == "stretch":
        for a, s in zip(axes, sizes):
            out[a] = int(s)
            factors[a] = s / dims[a] if isinstance(dims[a], int) and dims[a] else None
        return out, factors
    scale = _aspect_scale(node, dims, axes, sizes)
    for a in axes:
        out[a] = None if scale is None else int(scale * dims[a] + 0.5)
        factors[a] = scale
    return out, factors


def _const_values(node: Node, i: int) -> list | None:
    value = const_input(node, i)
    return None if value is None else value.reshape(-1).tolist()


def _infer_resize(node: Node) -> list[TensorType]:
    _check_attrs(node)
    x = in_type(node)
    has_scales, has_sizes = given(node, 2), given(node, 3)
    if has_scales == has_sizes:
        raise shape_error(node, "exactly one of scales and sizes must be given")
    if x.shape is None:
        return [unknown_dims(x.dtype, None)]
    scales = _const_values(node, 2) if has_scales else None
    sizes = _const_values(node, 3) if has_sizes else None
    if scales is None and sizes is None:
        axes = resize_axes(node, len(x.shape))
        return [TensorType(x.dtype, tuple(None if k in axes else d for k, d in enumerate(x.shape)))]
    out, _ = resize_target(node, x.shape, scales, sizes)
    return [TensorType(x.dtype, tuple(out))]


SCHEMAS = {
    "Resize": OpSchema("Resize", _infer_resize, inputs=(1, 4), attrs={
        "mode": "nearest", "coordinate_transformation_mode": "half_pixel",
        "nearest_mode": "round_prefer_floor", "cubic_coeff_a": -0.75, "exclude_outside": 0,
        "extrapolation_value": 0.0, "antialias": 0, "axes": None, "keep_aspect_ratio_policy": "stretch"}),
}

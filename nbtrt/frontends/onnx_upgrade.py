"""Rewrite older ONNX opset forms of the tensor ops into their canonical (latest-opset) form.

``upgrade(op, opset, attrs, inputs) -> (op, attrs, inputs)``: ``opset`` is the model's default-domain
opset, ``attrs`` the decoded attribute values, ``inputs`` the node's inputs (opaque objects, None for an
omitted optional input); values that moved from attributes to inputs come back as new numpy arrays,
which the frontend turns into constants. Ops and opsets not listed here pass through unchanged.

=====================================  =============================================================
old form                               canonical form
=====================================  =============================================================
Reshape < 5 {shape}                    Reshape(data, shape)
Concat < 4 without axis                Concat{axis=1}
Split < 13 {split}                     Split(input, split)
Squeeze / Unsqueeze < 13 {axes}        Squeeze / Unsqueeze(data, axes)
ReduceSum < 13, ReduceMean/Max < 18    Reduce*(data, axes)
Slice < 10 {starts, ends, axes}        Slice(data, starts, ends, axes)
Pad < 11 {pads|paddings, value}        Pad(data, pads, constant_value){mode}
Dropout < 12 {ratio, is_test}          Dropout(data): identity at inference
Upsample {scales} or (X, scales)       Resize(X, _, scales){asymmetric; nearest: floor}
Resize 10 (X, scales)                  Resize(X, _, scales){asymmetric; nearest: floor}
Resize < 13 tf_half_pixel_for_nn       half_pixel with the nearest_mode that picks the same pixel
Clip < 11 {min, max}                   Clip(x, min, max)
BatchNormalization < 9 {spatial, ..}   BatchNormalization (spatial=1 only; is_test dropped)
Gemm < 7 {broadcast}                   Gemm (C always broadcasts)
Add/Sub/Mul/Div < 7 {broadcast, axis}  numpy broadcasting; B reshaped to align at ``axis``
PRelu < 7 with a [C] slope             slope reshaped to [C, 1, ...] (per channel)
=====================================  =============================================================

``consumed_inputs`` (opset 1 bookkeeping) is dropped wherever it appears.
"""

from __future__ import annotations

import numpy as np

from ..errors import AttributeValueError


def _ints(values) -> np.ndarray:
    return np.asarray(list(values), dtype=np.int64)


def _attr_to_input(attrs: dict, inputs: list, name: str, position: int) -> list:
    """Move the int-list attribute ``name`` (if present) to input ``position``."""
    if name not in attrs:
        return inputs
    value = _ints(attrs.pop(name))
    inputs = list(inputs) + [None] * max(0, position - len(inputs))
    return inputs[:position] + [value] + inputs[position + 1:]


def _reshape(opset, attrs, inputs):
    if opset < 5 and "shape" in attrs:
        inputs = _attr_to_input(attrs, inputs[:1], "shape", 1)
    return "Reshape", attrs, inputs


def _concat(opset, attrs, inputs):
    if opset < 4:
        attrs.setdefault("axis", 1)
    return "Concat", attrs, inputs


def _split(opset, attrs, inputs):
    if opset < 13:
        split = attrs.pop("split", None)
        if split is not None and len(split) and (len(inputs) < 2 or inputs[1] is None):
            inputs = [inputs[0], _ints(split)]
    return "Split", attrs, inputs


def _axes_to_input(threshold: int):
    def rewrite(op, opset, attrs, inputs):
        if opset < threshold:
            inputs = _attr_to_input(attrs, inputs[:1], "axes", 1)
        return op, attrs, inputs
    return rewrite


def _slice(opset, attrs, inputs):
    if opset < 10:
        data = inputs[:1]
        bounds = [_ints(attrs.pop("starts")), _ints(attrs.pop("ends"))]
        if "axes" in attrs:
            bounds.append(_ints(attrs.pop("axes")))
        inputs = data + bounds
    return "Slice", attrs, inputs


def _pad(opset, attrs, inputs):
    if opset < 11:
        pads = attrs.pop("pads", None)
        pads = attrs.pop("paddings", None) if pads is None else pads
        value = attrs.pop("value", 0.0)
        dtype = getattr(getattr(inputs[0], "type", None), "dtype", None) or "float32"
        inputs = [inputs[0], _ints(pads), np.asarray(value, dtype=dtype)]
    return "Pad", attrs, inputs


def _dropout(opset, attrs, inputs):
    if opset < 12:
        for name in ("ratio", "is_test"):
            attrs.pop(name, None)
        inputs = inputs[:1]
    return "Dropout", attrs, inputs


def _legacy_resize_attrs(mode: str) -> dict:
    mode = {"bilinear": "linear"}.get(mode, mode)
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "nearest":
        attrs["nearest_mode"] = "floor"
    return attrs


def _upsample(opset, attrs, inputs):
    """Upsample (all versions): nearest picks floor(y / scale), linear samples at y / scale."""
    if "scales" in attrs:
        scales = np.asarray(attrs.pop("scales"), dtype=np.float32)
    elif "height_scale" in attrs or "width_scale" in attrs:
        scales = np.asarray([1, 1, attrs.pop("height_scale", 1.0), attrs.pop("width_scale", 1.0)],
                            dtype=np.float32)
    else:
        scales = inputs[1]
    return "Resize", _legacy_resize_attrs(attrs.get("mode", "nearest")), [inputs[0], None, scales]


# tf_half_pixel_for_nn samples at x = (y + 0.5) / s = x' + 0.5 with x' the half_pixel coordinate, so
# round_prefer_floor(x) = ceil(x') and floor(x) = round_prefer_ceil(x').
_TF_NN_MODES = {"round_prefer_floor": "ceil", "floor": "round_prefer_ceil"}


def _resize(opset, attrs, inputs):
    if opset < 11:
        return "Resize", _legacy_resize_attrs(attrs.get("mode", "nearest")), [inputs[0], None, inputs[1]]
    if attrs.get("coordinate_transformation_mode") == "tf_half_pixel_for_nn":
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
        if attrs.get("mode", "nearest") != "nearest" or nearest not in _TF_NN_MODES:
            raise AttributeValueError(
                f"Resize with coordinate_transformation_mode=tf_half_pixel_for_nn, mode="
                f"{attrs.get('mode', 'nearest')} and nearest_mode={nearest} has no opset-19 equivalent")
        attrs["coordinate_transformation_mode"] = "half_pixel"
        attrs["nearest_mode"] = _TF_NN_MODES[nearest]
    return "Resize", attrs, inputs


def _clip(opset, attrs, inputs):
    if opset < 11:
        dtype = getattr(getattr(inputs[0], "type", None), "dtype", None) or "float32"
        lo, hi = attrs.pop("min", None), attrs.pop("max", None)
        inputs = [inputs[0], None if lo is None else np.asarray(lo, dtype=dtype),
                  None if hi is None else np.asarray(hi, dtype=dtype)]
    return "Clip", attrs, inputs


def _batchnorm(opset, attrs, inputs):
    attrs.pop("is_test", None)
    if not attrs.pop("spatial", 1):
        raise AttributeValueError("BatchNormalization with spatial=0 (per-activation statistics) is not supported")
    return "BatchNormalization", attrs, inputs


def _gemm(opset, attrs, inputs):
    attrs.pop("broadcast", None)
    return "Gemm", attrs, inputs


def _legacy_broadcast(op, opset, attrs, inputs):
    """Before opset 7, B broadcast to A only with broadcast=1, aligned at ``axis`` (default: suffix)."""
    attrs.pop("broadcast", None)
    axis = attrs.pop("axis", None)
    a, b = inputs[0], inputs[1]
    rank_a, rank_b = getattr(a, "type", None) and a.type.rank, getattr(b, "type", None) and b.type.rank
    if axis is None or rank_a is None or rank_b is None:
        return op, attrs, inputs
    trailing = rank_a - (axis % rank_a) - rank_b
    if trailing > 0:
        if b.const is None:
            raise AttributeValueError(f"{op} with legacy broadcast axis={axis} needs a constant B")
        inputs = [a, b.const.reshape(b.const.shape + (1,) * trailing)]
    return op, attrs, inputs


def _prelu(opset, attrs, inputs):
    x, slope = inputs
    rank = getattr(x, "type", None) and x.type.rank
    if opset < 7 and rank and rank > 2 and slope.const is not None and slope.const.ndim == 1 \
            and slope.const.size > 1:
        inputs = [x, slope.const.reshape((-1,) + (1,) * (rank - 2))]
    return "PRelu", attrs, inputs


_REWRITES = {
    "Reshape": _reshape, "Concat": _concat, "Split": _split, "Slice": _slice, "Pad": _pad,
    "Dropout": _dropout, "Upsample": _upsample, "Resize": _resize, "Clip": _clip,
    "BatchNormalization": _batchnorm, "Gemm": _gemm, "PRelu": _prelu,
}
_LEGACY_BINARY = {"Add", "Sub", "Mul", "Div"}
_AXES_INPUT = {"Squeeze": 13, "Unsqueeze": 13, "ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18}


def upgrade(op: str, opset: int, attrs: dict, inputs: list) -> tuple[str, dict, list]:
    """The canonical (op, attrs, inputs) of a node written for ``opset``; see the module table."""
    attrs, inputs = dict(attrs), list(inputs)
    attrs.pop("consumed_inputs", None)
    if op in _AXES_INPUT:
        return _axes_to_input(_AXES_INPUT[op])(op, opset, attrs, inputs)
    if op in _REWRITES:
        return _REWRITES[op](opset, attrs, inputs)
    if op in _LEGACY_BINARY and opset < 7:
        return _legacy_broadcast(op, opset, attrs, inputs)
    return op, attrs, inputs

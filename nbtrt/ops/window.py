"""Sliding-window geometry shared by Conv, ConvTranspose, MaxPool and AveragePool (and their kernels).

Along one spatial axis of size ``n`` with kernel ``k``, stride ``s``, dilation ``d`` and pads
``(pb, pe)`` the dilated kernel spans ``dk = (k - 1)·d + 1`` and (ONNX, opset 22)

    NOTSET      out = floor((n + pb + pe − dk) / s) + 1        (ceil with ceil_mode, but a window
                                                                 must start inside input + pb)
    VALID       out = floor((n − dk) / s) + 1,                  pb = pe = 0
    SAME_*      out = ceil(n / s),  total = max(0, (out − 1)·s + dk − n),
                SAME_UPPER: pb = floor(total / 2)   SAME_LOWER: pb = ceil(total / 2),   pe = total − pb

ConvTranspose runs the window backwards: the full output is ``s·(n − 1) + dk + output_padding`` and
``pads`` crop it; with ``output_shape`` (or SAME_*, whose target is ``n·s``) the crop is derived:
``total = full − target``, SAME_UPPER: ``pb = floor(total / 2)``, otherwise ``pb = total − floor(total / 2)``.
A negative crop (a target larger than the full output) extends the output with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

from ..ir import Dim, Node
from .schema import attr_error, shape_error

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class Window:
    """Resolved window attributes for ``n`` spatial axes; ``pads`` is (begin..., end...)."""

    kernel: tuple[Dim, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]
    auto_pad: str

    @property
    def nsp(self) -> int:
        return len(self.kernel)


def shape_or_none(node: Node, i: int, rank: int | None = None) -> tuple[Dim, ...] | None:
    """Input ``i``'s shape; when its rank is unknown, ``rank`` unknown dims (or None without ``rank``)."""
    shape = node.inputs[i].type.shape
    return (None,) * rank if shape is None and rank is not None else shape


def int_tuple(node: Node, name: str, n: int, default: int, low: int) -> tuple[int, ...]:
    """Attribute ``name`` as ``n`` ints >= ``low`` (``None`` means ``default`` everywhere)."""
    value = node.attrs.get(name)
    if value is None:
        return (default,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise attr_error(node, f"{name} has {len(value)} values, expected {n} "
                         f"({'two per' if name == 'pads' else 'one per'} spatial axis)")
    if any(v < low for v in value):
        raise attr_error(node, f"{name} {list(value)} has a value below {low}")
    return value


def flag(node: Node, name: str) -> bool:
    """A 0/1 attribute."""
    value = node.attrs.get(name, 0)
    if value not in (0, 1):
        raise attr_error(node, f"{name} must be 0 or 1, got {value!r}")
    return bool(value)


def positive_int(node: Node, name: str) -> int:
    value = node.attrs.get(name)
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise attr_error(node, f"{name} must be a positive integer, got {value!r}")
    return int(value)


def window_attrs(node: Node, kernel: tuple[Dim, ...]) -> Window:
    """Validate strides, dilations, pads and auto_pad for a window of shape ``kernel``."""
    n = len(kernel)
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad not in AUTO_PADS:
        raise attr_error(node, f"auto_pad {auto_pad!r} is not one of {', '.join(AUTO_PADS)}")
    if any(isinstance(k, int) and k < 1 for k in kernel):
        raise attr_error(node, f"kernel shape {list(kernel)} has a non-positive size")
    strides = int_tuple(node, "strides", n, 1, 1)
    dilations = int_tuple(node, "dilations", n, 1, 1)
    pads = int_tuple(node, "pads", 2 * n, 0, 0)
    if auto_pad != "NOTSET":
        pads = (0,) * (2 * n)  # ONNX: explicit pads are not used together with auto_pad
    return Window(tuple(kernel), strides, dilations, pads, auto_pad)


def kernel_from_attr(node: Node, weight_dims: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """Conv kernel: the ``kernel_shape`` attribute (checked against W) or W's spatial dims."""
    attr = node.attrs.get("kernel_shape")
    if attr is None:
        return tuple(weight_dims)
    attr = tuple(int(k) for k in attr)
    if len(attr) != len(weight_dims):
        raise attr_error(node, f"kernel_shape {list(attr)} has {len(attr)} values, "
                         f"the weight has {len(weight_dims)} spatial axes")
    for a, w in zip(attr, weight_dims):
        if isinstance(w, int) and a != w:
            raise shape_error(node, f"kernel_shape {list(attr)} contradicts the weight's spatial "
                                    f"dims {list(weight_dims)}")
    return attr


def forward_axis(node: Node, win: Window, i: int, size: Dim, ceil_mode: bool = False):
    """(out, pad_begin, pad_end) along spatial axis ``i``; out is None if it cannot be known."""
    k, s, d = win.kernel[i], win.strides[i], win.dilations[i]
    pb, pe = win.pads[i], win.pads[i + win.nsp]
    if not isinstance(size, int) or not isinstance(k, int):
        return None, pb, pe
    dk = (k - 1) * d + 1
    if win.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-size // s)
        total = max(0, (out - 1) * s + dk - size)
        pb = total // 2 if win.auto_pad == "SAME_UPPER" else total - total // 2
        return out, pb, total - pb
    span = size + pb + pe - dk
    if span < 0:
        raise shape_error(node, f"the window ({dk} with dilation) is larger than the padded input "
                                f"({size} + {pb + pe}) on spatial axis {i}")
    out = span // s + 1
    if ceil_mode and win.auto_pad == "NOTSET" and span % s:
        out += 1
        if (out - 1) * s >= size + pb:  # the last window would start in the end padding
            out -= 1
    return out, pb, pe


def forward_shape(node: Node, win: Window, sizes: tuple[Dim, ...], ceil_mode: bool = False):
    """Output spatial dims and the resolved pads (begin..., end...) of a forward window."""
    axes = [forward_axis(node, win, i, n, ceil_mode) for i, n in enumerate(sizes)]
    return tuple(a[0] for a in axes), tuple(a[1] for a in axes) + tuple(a[2] for a in axes)


def transpose_axis(node: Node, win: Window, i: int, size: Dim, out_pad: int, target: int | None):
    """(out, crop_begin, crop_end) of ConvTranspose along axis ``i`` (crops may be negative)."""
    k, s, d = win.kernel[i], win.strides[i], win.dilations[i]
    pb, pe = win.pads[i], win.pads[i + win.nsp]
    if not isinstance(size, int) or not isinstance(k, int):
        return target, pb, pe
    full = s * (size - 1) + (k - 1) * d + 1 + out_pad
    if target is None and win.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = size * s
    if target is not None:
        total = full - target
        pb = total // 2 if win.auto_pad == "SAME_UPPER" else total - total // 2
        pe = total - pb
    out = full - pb - pe
    if out < 1:
        raise shape_error(node, f"pads {pb}+{pe} leave no output on spatial axis {i} "
                                f"(the full output is {full})")
    return out, pb, pe


def transpose_shape(node: Node, win: Window, sizes: tuple[Dim, ...]):
    """Output spatial dims and crops (begin..., end...) of ConvTranspose."""
    n = win.nsp
    out_pad = int_tuple(node, "output_padding", n, 0, 0)
    target = node.attrs.get("output_shape")
    if target is not None:
        target = tuple(int(t) for t in target)
        if len(target) not in (n, n + 2):
            raise attr_error(node, f"output_shape {list(target)} must have {n} spatial values")
        target = target[-n:]
        if any(t < 1 for t in target):
            raise attr_error(node, f"output_shape {list(target)} has a non-positive size")
    axes = [transpose_axis(node, win, i, sizes[i], out_pad[i], None if target is None else target[i])
            for i in range(n)]
    return tuple(a[0] for a in axes), tuple(a[1] for a in axes) + tuple(a[2] for a in axes)

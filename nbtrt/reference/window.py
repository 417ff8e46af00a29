"""numpy helpers shared by the convolution and pooling kernels: working dtype, spatial padding and
the strided, dilated window view (no copies, no per-pixel loops).

``window_view(xp, kernel, strides, dilations, out)`` returns a view of shape ``(N, C, *out, *kernel)``
whose element ``[n, c, o…, j…]`` is ``xp[n, c, o·s + j·d …]``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def work_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype to compute a float op in: float16 widens to float32, others stay."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def acc_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype to accumulate dot products in: float64 for every float input, so that the oracle is
    (nearly) correctly rounded and equal rows give equal results whatever BLAS's blocking."""
    return np.dtype(np.float64) if np.dtype(dtype).kind == "f" else np.dtype(dtype)


def pad_spatial(x: np.ndarray, begin, end, value=0) -> np.ndarray:
    """Pad the spatial axes (2…) of ``x`` by ``begin``/``end`` elements with ``value``."""
    if not any(begin) and not any(end):
        return x
    widths = [(0, 0), (0, 0)] + [(int(b), int(e)) for b, e in zip(begin, end)]
    return np.pad(x, widths, mode="constant", constant_values=value)


def window_view(xp: np.ndarray, kernel, strides, dilations, out) -> np.ndarray:
    """The (N, C, *out, *kernel) view of the padded input ``xp``; ``xp`` must be large enough."""
    nsp = len(kernel)
    spans = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilations))
    view = sliding_window_view(xp, spans, axis=tuple(range(2, 2 + nsp)))
    index = (slice(None), slice(None))
    index += tuple(slice(None, (o - 1) * s + 1, s) for o, s in zip(out, strides))
    index += tuple(slice(None, None, d) for d in dilations)
    return view[index]


def needed_end_pads(sizes, kernel, strides, dilations, out, begin, end) -> list[int]:
    """End pads large enough for ``out`` windows (ceil_mode may need more than the explicit pads)."""
    pads = []
    for n, k, s, d, o, b, e in zip(sizes, kernel, strides, dilations, out, begin, end):
        pads.append(max(e, (o - 1) * s + (k - 1) * d + 1 - n - b))
    return pads

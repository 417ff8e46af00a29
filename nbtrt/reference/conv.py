"""numpy Conv and ConvTranspose.

Both accumulate in float64 (``acc_dtype``) and round once to the input dtype.

Conv is an im2col: the padded input's windows (a strided view) are gathered per image into a matrix
``cols[g, (c, j), p]`` and multiplied by the weights ``W[g, m, (c, j)]``:
``Y[n, g·Mg + m, p] = Σ_{c, j} W[g, m, (c, j)] · cols[g, (c, j), p] + B``.

ConvTranspose loops over the kernel offsets ``j`` (a handful) instead of pixels: for each, the channel
product ``Z[n, g, m, i] = Σ_c W[g·Cg + c, m, j] · X[n, g·Cg + c, i]`` is added into the full output at
``i·s + j·d``; the full output (size ``s·(n − 1) + dk + output_padding``) is then cropped by the pads
(a negative crop extends it with zeros).
"""

from __future__ import annotations

import numpy as np

from ..ops.window import forward_shape, int_tuple, kernel_from_attr, transpose_shape, window_attrs
from .window import acc_dtype, pad_spatial, window_view


def _with_bias(y: np.ndarray, b) -> np.ndarray:
    if b is not None:
        y += np.asarray(b, dtype=y.dtype).reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def conv(node, x, w, b=None):
    nsp = x.ndim - 2
    win = window_attrs(node, kernel_from_attr(node, w.shape[2:]))
    out, pads = forward_shape(node, win, x.shape[2:])
    ct = acc_dtype(x.dtype)
    xp = pad_spatial(x.astype(ct, copy=False), pads[:nsp], pads[nsp:])
    view = window_view(xp, win.kernel, win.strides, win.dilations, out)  # (N, C, *out, *k)
    n_img = x.shape[0]
    m_out, group = w.shape[0], int(node.attrs["group"])
    pixels = int(np.prod(out, dtype=np.int64))
    wg = w.astype(ct).reshape(group, m_out // group, -1)  # (G, Mg, Cg·K)
    order = (0,) + tuple(range(1 + nsp, 1 + 2 * nsp)) + tuple(range(1, 1 + nsp))  # (C, *k, *out)
    y = np.empty((n_img, m_out, pixels), dtype=ct)
    for i in range(n_img):
        cols = view[i].transpose(order).reshape(group, -1, pixels)  # (G, Cg·K, P), one copy
        y[i] = np.matmul(wg, cols).reshape(m_out, pixels)
    y = _with_bias(y.reshape((n_img, m_out) + tuple(out)), b)
    return y.astype(x.dtype, copy=False)


def _crop(y: np.ndarray, begin, end, out) -> np.ndarray:
    """Crop the spatial axes by begin/end (negative: extend with zeros) to the sizes ``out``."""
    y = pad_spatial(y, [max(0, -p) for p in begin], [max(0, -p) for p in end])
    index = (slice(None), slice(None)) + tuple(slice(max(0, p), max(0, p) + o) for p, o in zip(begin, out))
    return y[index]


def conv_transpose(node, x, w, b=None):
    nsp = x.ndim - 2
    win = window_attrs(node, kernel_from_attr(node, w.shape[2:]))
    out, crops = transpose_shape(node, win, x.shape[2:])
    out_pad = int_tuple(node, "output_padding", nsp, 0, 0)
    ct = acc_dtype(x.dtype)
    n_img, c_in = x.shape[:2]
    group = int(node.attrs["group"])
    m_g = w.shape[1]
    sizes = x.shape[2:]
    full = [s * (n - 1) + (k - 1) * d + 1 + p
            for n, k, s, d, p in zip(sizes, win.kernel, win.strides, win.dilations, out_pad)]
    y = np.zeros((n_img, group, m_g) + tuple(full), dtype=ct)
    xg = x.astype(ct).reshape(n_img, group, c_in // group, -1)  # (N, G, Cg, P)
    wg = w.astype(ct).reshape((group, c_in // group, m_g) + tuple(win.kernel))
    for j in np.ndindex(*win.kernel):
        wj = wg[(slice(None),) * 3 + j].transpose(0, 2, 1)  # (G, Mg, Cg)
        z = np.matmul(wj, xg).reshape((n_img, group, m_g) + tuple(sizes))
        index = (slice(None),) * 3 + tuple(slice(jj * d, jj * d + s * (n - 1) + 1, s)
                                           for jj, d, s, n in zip(j, win.dilations, win.strides, sizes))
        y[index] += z
    y = y.reshape((n_img, group * m_g) + tuple(full))
    y = _with_bias(np.ascontiguousarray(_crop(y, crops[:nsp], crops[nsp:], out)), b)
    return y.astype(x.dtype, copy=False)


KERNELS = {"Conv": conv, "ConvTranspose": conv_transpose}

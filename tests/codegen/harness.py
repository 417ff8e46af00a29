"""Running one generated kernel in the simulator (or on a GPU) against the reference.

Outputs are poisoned with NaN (or the dtype's max) before the launch so unwritten elements show; an
output may be placed at an offset/stride inside a larger buffer, whose other elements must stay
poisoned.
"""

import numpy as np

from nbtrt.codegen import generate
from nbtrt.codegen.build import jit
from nbtrt.codegen.kernel import TensorArg, scratch_arrays
from nbtrt.reference import KERNELS


def poison(dtype, n):
    dtype = np.dtype(dtype)
    fill = np.nan if dtype.kind == "f" else np.iinfo(dtype).max if dtype.kind in "iu" else True
    return np.full(n, fill, dtype)


def laid_out(arg, array):
    """A flat buffer holding ``array`` where ``arg`` (offset, strides) places it; the rest poisoned."""
    size = arg.offset + 1 + sum((d - 1) * s for d, s in zip(arg.shape, arg.strides))
    flat = poison(array.dtype, size)
    np.lib.stride_tricks.as_strided(flat[arg.offset:], arg.shape, [s * flat.itemsize for s in arg.strides])[...] = array
    return flat


def run_generated(node, arrays, tactic=None, out_args=None, buffer_sizes=None, in_args=None):
    """Launch the kernel generated for ``node`` on ``arrays`` (laid out as ``in_args`` say, else
    contiguous); return (outputs, raw output buffers, spec)."""
    ins = in_args or [None if a is None else TensorArg.contiguous(f"in{k}", a.dtype.name, a.shape)
                      for k, a in enumerate(arrays)]
    outs = out_args or [TensorArg.contiguous(f"out{i}", v.type.dtype, v.type.shape)
                        for i, v in enumerate(node.outputs)]
    spec = generate(node, outs, ins, tactic)
    buffers = {a.param: laid_out(a, x) for a, x in zip(ins, arrays) if a is not None}
    for i, o in enumerate(outs):
        size = (buffer_sizes or {}).get(o.param, o.numel + o.offset)
        buffers[o.param] = poison(o.dtype, size)
    scratch = scratch_arrays(spec.scratch) if spec.scratch else []
    jit(spec)[spec.grid, spec.block](*[buffers[p] for p in spec.tensor_params], *scratch)
    results = [np.lib.stride_tricks.as_strided(buffers[o.param][o.offset:], o.shape,
                                               [s * buffers[o.param].itemsize for s in o.strides]).copy()
               for o in outs]
    return results, buffers, spec


def expected(node, arrays):
    out = KERNELS[node.op](node, *arrays)
    return list(out) if isinstance(out, tuple) else [out]


def assert_matches(node, arrays, rtol=1e-5, atol=1e-6, tactic=None):
    got, _, spec = run_generated(node, arrays, tactic)
    for g, w in zip(got, expected(node, arrays)):
        assert not np.isnan(g).any() or np.isnan(w).any(), f"unwritten elements\n{spec.source}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=spec.source)
    return spec

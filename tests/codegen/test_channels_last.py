"""Every kernel family on channels-last tensors (the memory plan's NHWC layout, runtime/layout.py):
4-D float inputs and outputs get NHWC strides (some inside a wider buffer at a channel offset), the
outputs are poisoned, and the results must match the reference; per-element kernels enumerate their
output in its memory order (channels fastest)."""

import numpy as np
import pytest

from harness import expected, run_generated
from nbtrt.codegen.kernel import TensorArg, element_order, unravel
from nbtrt.groups import Step
from test_conv import conv_group
from test_gemm import gemm_group
from test_reduce import plain

S = (2, 5, 3, 4)
C1 = (1, 5, 1, 1)
BN = {1: np.linspace(0.5, 1.5, 5, dtype=np.float32), 2: np.linspace(-1, 1, 5, dtype=np.float32),
      3: np.linspace(-0.2, 0.2, 5, dtype=np.float32), 4: np.linspace(0.5, 2, 5, dtype=np.float32)}
CASES = {  # name: (op, input shapes, attributes, constants by input index, extra channels for NHWC slices)
    "add_broadcast": ("Add", [S, C1], {}, {}, 3),
    "relu": ("Relu", [S], {}, {}, 0),
    "maxpool": ("MaxPool", [S], {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1]}, {}, 2),
    "avgpool": ("AveragePool", [S], {"kernel_shape": [2, 3], "strides": [1, 2]}, {}, 0),
    "global_avg": ("GlobalAveragePool", [S], {}, {}, 1),
    "global_max": ("GlobalMaxPool", [S], {}, {}, 0),
    "batchnorm": ("BatchNormalization", [S, (5,), (5,), (5,), (5,)], {}, BN, 2),
    "lrn": ("LRN", [S], {"size": 3}, {}, 0),
    "instance_norm": ("InstanceNormalization", [S, (5,), (5,)], {}, {1: BN[1], 2: BN[2]}, 0),
    "layer_norm": ("LayerNormalization", [S, (4,), (4,)], {"axis": -1}, {1: np.ones(4, np.float32),
                                                                         2: np.zeros(4, np.float32)}, 0),
    "reduce_mean_hw": ("ReduceMean", [S, (2,)], {"keepdims": 1}, {1: np.array([2, 3])}, 0),
    "reduce_sum_c": ("ReduceSum", [S, (1,)], {"keepdims": 1}, {1: np.array([1])}, 0),
    "softmax_c": ("Softmax", [S], {"axis": 1}, {}, 2),
    "softmax_w": ("Softmax", [S], {"axis": 3}, {}, 0),
    "resize_nearest": ("Resize", [S, None, (4,)], {"mode": "nearest"},
                       {2: np.array([1, 1, 2, 1.5], np.float32)}, 0),
    "resize_linear": ("Resize", [S, None, (4,)], {"mode": "linear"}, {2: np.array([1, 1, 2, 2], np.float32)}, 1),
    "pad": ("Pad", [S, (8,)], {"mode": "reflect"}, {1: np.array([0, 0, 1, 2, 0, 0, 2, 1])}, 0),
    "transpose": ("Transpose", [S], {"perm": [0, 1, 3, 2]}, {}, 0),
    "slice": ("Slice", [S, (1,), (1,), (1,)], {}, {1: np.array([1]), 2: np.array([4]), 3: np.array([1])}, 2),
    "concat": ("Concat", [S, (2, 2, 3, 4)], {"axis": 1}, {}, 0),
}


def nhwc(param, dtype, shape, extra=0, first=0):
    """Channels-last strides; ``extra`` more channels in the buffer, this tensor's from ``first`` on."""
    _, c, h, w = shape
    total = c + extra
    return TensorArg(param, dtype, tuple(shape), (h * w * total, 1, w * total, total), first)


def layout(param, dtype, shape, extra):
    if len(shape) == 4:
        return nhwc(param, dtype, shape, extra, extra // 2)
    return TensorArg.contiguous(param, dtype, shape)


def run_nhwc(node, arrays, extra=0, tactic=None):
    ins = [None if a is None else layout(f"in{k}", a.dtype.name, a.shape, extra) for k, a in enumerate(arrays)]
    outs = [layout(f"out{i}", v.type.dtype, v.type.shape, extra) for i, v in enumerate(node.outputs)]
    sizes = {o.param: o.offset + 1 + sum((d - 1) * s for d, s in zip(o.shape, o.strides)) for o in outs}
    got, _, spec = run_generated(node, arrays, tactic, out_args=outs, in_args=ins, buffer_sizes=sizes)
    for g, w in zip(got, expected(node, arrays)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=spec.source)
    return spec


@pytest.mark.parametrize("case", sorted(CASES))
def test_family_on_nhwc_tensors(case):
    op, shapes, attrs, consts, extra = CASES[case]
    run_nhwc(plain(op, shapes, attrs, consts), arrays_for(shapes, consts), extra)


def arrays_for(shapes, consts=None):
    rng = np.random.default_rng(0)
    return [None if s is None else (consts or {})[k] if k in (consts or {}) else
            rng.standard_normal(s).astype(np.float32) for k, s in enumerate(shapes)]


def test_split_and_matmul_on_nhwc():
    split = np.array([2, 3])
    run_nhwc(plain("Split", [S, (2,)], {"axis": 1}, {1: split}, n_outputs=2), arrays_for([S, (2,)], {1: split}), 2)
    node = gemm_group("MatMul", S, (4, 6), program=(Step("Add", ("acc", "in2")),), extra=[(2, 5, 3, 6)])
    run_nhwc(node, arrays_for([S, (4, 6), (2, 5, 3, 6)]), 1)


@pytest.mark.parametrize("attrs, w_shape", [({"pads": [1, 1, 1, 1]}, (4, 5, 3, 3)),
                                            ({"group": 5, "strides": [2, 1]}, (5, 1, 3, 2)),
                                            ({"group": 5, "pads": [0, 1, 1, 0]}, (10, 1, 2, 2))])
def test_direct_conv_on_nhwc(attrs, w_shape):
    node = conv_group(S, w_shape, attrs)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(S).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    spec = run_nhwc(node, [x, w], 0, {"algorithm": "direct", "threads": 32})
    assert f"ch = (i) % {node.outputs[0].type.shape[1]}" in spec.source  # channels fastest


def test_conv_transpose_on_nhwc():
    node = conv_group(S, (5, 2, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, base="ConvTranspose")
    rng = np.random.default_rng(2)
    run_nhwc(node, [rng.standard_normal(S).astype(np.float32), rng.standard_normal((5, 2, 3, 3)).astype(np.float32)])


def test_element_order():
    assert element_order(TensorArg.contiguous("a", "float32", S)) is None
    assert element_order(TensorArg("a", "float32", S, (60, 1, 20, 5), 0)) == (0, 2, 3, 1)
    assert element_order(TensorArg("a", "float32", (2, 5, 1, 1), (5, 1, 5, 5), 0)) is None  # neutral
    assert element_order(TensorArg("a", "float32", (2, 8, 3, 4), (192, 12, 4, 1), 24)) is None  # a channel slice
    # unravel in an order visits every coordinate once, the innermost dim fastest
    shape, order = (2, 3, 1, 4), (0, 3, 2, 1)
    lines = unravel("i", shape, order=order)
    seen = []
    for i in range(24):
        env = {"i": i}
        exec("\n".join(lines), {}, env)
        seen.append(tuple(env[f"c{k}"] for k in range(4)))
    assert seen == [(a, c, 0, d) for a in range(2) for d in range(4) for c in range(3)]
    assert unravel("i", S) == ["c0 = i // 60", "c1 = (i // 12) % 5", "c2 = (i // 4) % 3", "c3 = (i) % 4"]

"""Kernels that move float16 channels-last tensors 16 bytes at a time (on a GPU only: the simulator
has no vector loads), against the reference: windowed pools pooling runs of 8 channels (max and
average, pads, strides, ceil mode, a bias + Relu epilogue, input and output as channel slices of
wider buffers); constant pads writing 8 channels per thread (channel and spatial pads, crops, a fill
value, float32 or float16 input in either layout); SpaceToDepth writing whole pixels (float16, or
quantized int8); NaN-poisoned outputs."""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "codegen"))
from harness import run_generated  # noqa: E402
from test_mma_gpu import channels_last  # noqa: E402
from test_reduce import plain  # noqa: E402

from nbtrt.codegen import pool  # noqa: E402
from nbtrt.codegen.kernel import TensorArg  # noqa: E402
from nbtrt.errors import NbtrtError  # noqa: E402
from nbtrt.groups import Step, group_attrs, group_op  # noqa: E402
from nbtrt.ir import Graph, TensorType  # noqa: E402
from nbtrt.reference import KERNELS  # noqa: E402

pytestmark = pytest.mark.gpu
BIAS_RELU = (Step("Add", ("acc", "in1")), Step("Relu", ("s0",)))


def fp16_pool(base, x_shape, attrs, bias_relu, dtype="float16"):
    """An nbtrt.pool group over a float16 (or int8) input (with a per-channel bias + Relu epilogue)."""
    anchor = plain(base, [x_shape], attrs)
    g = Graph()
    ins = [g.add_input("x", TensorType(dtype, x_shape))]
    if bias_relu:
        ins.append(g.add_input("bias", TensorType("float32", (x_shape[1], 1, 1))))
    node = g.add_node(group_op(base), ins, name="pool_grp",
                      attrs=group_attrs(base, anchor.attrs, 1, (x_shape[1],), (BIAS_RELU if bias_relu else (),),
                                        (anchor.name, "epi")))
    node.outputs[0].type = TensorType(dtype, anchor.outputs[0].type.shape)
    return node


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_pool_runs_of_8_channels(data):
    """float16 max and average pools with or without bias + Relu; int8 max pools (int8 storage), 16
    channels per thread where their runs are 16-byte aligned."""
    base = data.draw(st.sampled_from(["MaxPool", "AveragePool"]))
    dtype = "int8" if base == "MaxPool" and data.draw(st.booleans()) else "float16"
    k, s = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [data.draw(st.integers(0, k - 1))] * 4,
             "ceil_mode": data.draw(st.sampled_from([0, 1]))}
    if base == "AveragePool":
        attrs["count_include_pad"] = data.draw(st.sampled_from([0, 1]))
    c = 8 * data.draw(st.integers(1, 6))
    x_shape = (data.draw(st.integers(1, 3)), c, data.draw(st.integers(k, 12)), data.draw(st.integers(k, 12)))
    try:
        node = fp16_pool(base, x_shape, attrs, dtype == "float16" and data.draw(st.booleans()), dtype)
    except NbtrtError:  # the window does not fit the padded input
        assume(False)
    wider, first = data.draw(st.sampled_from([(0, 0), (16, 8), (8, 0)]))
    y = node.outputs[0].type.shape
    ins = [channels_last("in0", dtype, x_shape, c + wider, first)]
    ins += [TensorArg.contiguous(f"in{j}", v.type.dtype, v.type.shape) for j, v in enumerate(node.inputs) if j]
    outs = [channels_last("out0", dtype, y, y[1] + wider, first)]
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    arrays = [rng.standard_normal(v.type.shape).astype(v.type.dtype) for v in node.inputs]
    size = outs[0].offset + 1 + sum((d - 1) * stride for d, stride in zip(y, outs[0].strides))
    if dtype == "int8":
        arrays = [rng.integers(-128, 128, x_shape).astype(np.int8)]
        busy = data.draw(st.booleans())  # whether this small pool counts as filling the GPU
        saved, pool.BUSY = pool.BUSY, 0 if busy else pool.BUSY
        try:
            got, _, spec = run_generated(node, arrays, {"threads": 64, "rows": 1, "blocks": 3}, outs, {"out0": size},
                                         ins)
        finally:
            pool.BUSY = saved
        sixteen = busy and c % 16 == 0 and wider % 16 == 0 and first % 16 == 0  # 16-byte aligned runs of 16
        assert ("spread_s8" in spec.source and "st_v4" in spec.source) if sixteen else "ld_v2" in spec.source
        np.testing.assert_array_equal(got[0], KERNELS[node.op](node, *arrays)[0])  # poisoned with 127
        return
    got, _, spec = run_generated(node, arrays, {"threads": 64, "rows": 1, "blocks": 3}, outs, {"out0": size}, ins)
    assert "ld_v4" in spec.source and "st_v4" in spec.source
    want = KERNELS[node.op](node, *[a.astype(np.float32) for a in arrays])[0]
    assert not np.isnan(got[0]).any(), spec.source
    np.testing.assert_allclose(got[0].astype(np.float32), want, rtol=2e-3, atol=2e-3)


def pad_node(x_shape, x_dtype, pads, value):
    g = Graph()
    x = g.add_input("x", TensorType(x_dtype, x_shape))
    ins = [x, g.add_constant("pads", np.array(pads, np.int64))]
    if value is not None:
        ins.append(g.add_constant("value", np.array(value, np.float32)))
    node = g.add_node("Pad", ins, attrs={"mode": "constant"}, name="pad")
    rank = len(x_shape)
    node.outputs[0].type = TensorType("float16", tuple(d + pads[k] + pads[rank + k] for k, d in enumerate(x_shape)))
    return node


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_pad_writes_runs_of_8_channels(data):
    c = data.draw(st.integers(1, 20))
    cb = data.draw(st.integers(0, 5))
    ce = (-(c + cb)) % 8 + 8 * data.draw(st.integers(0, 1))  # the output has a multiple of 8 channels
    spatial = [data.draw(st.integers(-1, 2)) for _ in range(4)]
    x_shape = (data.draw(st.integers(1, 2)), c, data.draw(st.integers(2, 7)), data.draw(st.integers(2, 7)))
    pads = [0, cb] + spatial[:2] + [0, ce] + spatial[2:]
    x_dtype = data.draw(st.sampled_from(["float32", "float16"]))
    node = pad_node(x_shape, x_dtype, pads, data.draw(st.sampled_from([None, 1.5])))
    y = node.outputs[0].type.shape
    x_arg = (channels_last("in0", x_dtype, x_shape) if data.draw(st.booleans())
             else TensorArg.contiguous("in0", x_dtype, x_shape))
    ins = [x_arg] + [None] * (len(node.inputs) - 1)
    arrays = [np.random.default_rng(1).standard_normal(x_shape).astype(x_dtype)] + [v.const for v in node.inputs[1:]]
    got, _, spec = run_generated(node, arrays, None, [channels_last("out0", "float16", y)], None, ins)
    assert "st_v4" in spec.source
    want = KERNELS["Pad"](node, *[a.astype(np.float32) if k == 0 else a for k, a in enumerate(arrays)])
    want = want[0] if isinstance(want, tuple) else want
    np.testing.assert_array_equal(got[0], want.astype(np.float16))


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_space_to_depth_writes_whole_pixels(data):
    """The stem's SpaceToDepth (passes/space_to_depth.py) one output pixel per thread: float16 runs of 8,
    or int8 quantized runs of 16 (``out_scales``), the zero channels included."""
    from test_space_to_depth_kernel import s2d_node
    b = data.draw(st.sampled_from([2, 3, 4]))
    c = data.draw(st.integers(1, 64 // (b * b)))
    out_dtype = data.draw(st.sampled_from(["float16", "int8"]))
    lane = 16 if out_dtype == "int8" else 8
    channels = -(-c * b * b // lane) * lane
    assume(channels <= 64)
    x_dtype = data.draw(st.sampled_from(["float32", "float16"]))
    shape = (data.draw(st.integers(1, 3)), c, b * data.draw(st.integers(1, 9)), b * data.draw(st.integers(1, 9)))
    node = s2d_node(shape, x_dtype, out_dtype, channels, 0.02 if out_dtype == "int8" else None, blocksize=b)
    x = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal(shape).astype(x_dtype)
    y = node.outputs[0].type.shape
    got, _, spec = run_generated(node, [x], None, [channels_last("out0", out_dtype, y)])
    assert "st_v4" in spec.source and "corner" in spec.source
    want = KERNELS["SpaceToDepth"](node, x.astype(np.float32))
    np.testing.assert_array_equal(got[0], want.astype(out_dtype), err_msg=spec.source)

"""SpaceToDepth kernels in the simulator against the reference: both modes, random blocks and shapes,
the zero channels ``passes/space_to_depth.py`` appends, float32 / float16 / quantized int8 outputs in
either layout, NaN-poisoned outputs (the per-pixel vector form is a GPU test: test_vector_gpu.py)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import run_generated
from nbtrt.codegen.kernel import TensorArg
from nbtrt.errors import AttributeValueError, NbtrtError, ShapeError
from nbtrt.ir import Graph, TensorType
from nbtrt.ops import fill_attributes, infer_node
from nbtrt.reference import KERNELS
from nbtrt.runtime.layout import channels_last_strides


def s2d_node(x_shape, x_dtype="float32", out_dtype=None, channels=None, scale=None, **attrs):
    """A SpaceToDepth node (with the pass's ``channels`` and int8 storage's ``out_scales``)."""
    g = Graph()
    node = g.add_node("SpaceToDepth", [g.add_input("x", TensorType(x_dtype, x_shape))], attrs=attrs, name="s2d")
    fill_attributes(node)
    if channels:
        node.attrs["channels"] = channels
    infer_node(node)
    if scale is not None:
        node.attrs["out_scales"] = [scale]
    node.outputs[0].type = TensorType(out_dtype or x_dtype, node.outputs[0].type.shape)
    return node


def out_arg(node, last: bool):
    t = node.outputs[0].type
    return (TensorArg("out0", t.dtype, t.shape, channels_last_strides(t.shape)) if last
            else TensorArg.contiguous("out0", t.dtype, t.shape))


def expected(node, x):
    return KERNELS["SpaceToDepth"](node, x.astype(np.float32))


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_space_to_depth_matches_the_reference(data):
    b, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    shape = (data.draw(st.integers(1, 2)), c, b * data.draw(st.integers(1, 3)), b * data.draw(st.integers(1, 3)))
    out_dtype = data.draw(st.sampled_from(["float32", "float16", "int8"]))
    mode = data.draw(st.sampled_from(["DCR", "CRD"]))
    extra = data.draw(st.integers(0, 3)) if mode == "DCR" else 0
    node = s2d_node(shape, "float32", out_dtype, c * b * b + extra or None, 0.02 if out_dtype == "int8" else None,
                    blocksize=b, mode=mode)
    x = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal(shape).astype(np.float32)
    got, _, spec = run_generated(node, [x], None, [out_arg(node, data.draw(st.booleans()))])
    want = expected(node, x)
    if out_dtype == "int8":  # poisoned with 127 (the zero channels show unwritten elements)
        np.testing.assert_array_equal(got[0], want, err_msg=spec.source)
    else:
        assert not np.isnan(got[0]).any(), spec.source
        np.testing.assert_array_equal(got[0], want.astype(out_dtype), err_msg=spec.source)
    if extra:
        assert not got[0][:, c * b * b:].astype(np.float32).any()


def test_space_to_depth_errors():
    with pytest.raises(ShapeError, match="height 5 is not a multiple of blocksize 2"):
        s2d_node((1, 3, 5, 4), blocksize=2)
    with pytest.raises(AttributeValueError, match="mode 'XYZ'"):
        s2d_node((1, 3, 4, 4), blocksize=2, mode="XYZ")
    with pytest.raises(NbtrtError, match="required attribute 'blocksize'"):
        s2d_node((1, 3, 4, 4))

"""Element-wise kernels in the simulator against the reference: random shapes, broadcasting, every
activation, strided outputs (a slice of a concat buffer)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import assert_matches, run_generated
from nbtrt.codegen.kernel import TensorArg
from nbtrt.groups import Step, group_attrs, group_op
from nbtrt.ir import Graph, TensorType

UNARY = [("Relu", ()), ("LeakyRelu", (("alpha", 0.1),)), ("Sigmoid", ()), ("Tanh", ()),
         ("HardSigmoid", (("alpha", 0.2), ("beta", 0.5))), ("HardSwish", ()), ("Elu", (("alpha", 1.0),)),
         ("Selu", (("alpha", 1.67), ("gamma", 1.05))), ("Softplus", ()), ("Gelu", (("approximate", "none"),)),
         ("Gelu", (("approximate", "tanh"),)), ("Exp", ()), ("Abs", ()), ("Neg", ()), ("Erf", ())]


def group_node(program, shapes, out_shape):
    g = Graph()
    ins = [g.add_input(f"x{k}", TensorType("float32", s)) for k, s in enumerate(shapes)]
    node = g.add_node(group_op(None), ins, attrs=group_attrs(None, {}, 0, (), (program,), ("n",)), name="grp")
    node.outputs[0].type = TensorType("float32", out_shape)
    return node


@st.composite
def broadcast_case(draw):
    rank = draw(st.integers(1, 4))
    out = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    def operand():
        r = draw(st.integers(0, rank))
        return tuple(1 if draw(st.booleans()) else d for d in out[rank - r:])
    return out, operand(), operand()


@settings(max_examples=15, deadline=None)
@given(broadcast_case(), st.sampled_from(UNARY), st.integers(0, 1000))
def test_add_mul_activation_broadcast(case, act, seed):
    out, a, b = case
    rng = np.random.default_rng(seed)
    program = (Step("Mul", ("in0", "in1")), Step("Add", ("s0", "in2")), Step(act[0], ("s1",), act[1]))
    arrays = [rng.standard_normal(s).astype(np.float32) for s in (out, a, b)]
    assert_matches(group_node(program, [out, a, b], out), arrays, rtol=1e-5, atol=1e-6)


def test_copy_into_concat_slice():
    rng = np.random.default_rng(0)
    node = group_node((Step("Identity", ("in0",)),), [(2, 3, 4)], (2, 3, 4))
    # the slice [:, 2:5, :] of a [2, 7, 4] concat buffer
    dst = TensorArg("out0", "float32", (2, 3, 4), (28, 4, 1), 8)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    (got,), buffers, _ = run_generated(node, [x], out_args=[dst], buffer_sizes={"out0": 56})
    np.testing.assert_array_equal(got, x)
    whole = buffers["out0"].reshape(2, 7, 4)
    assert np.isnan(whole[:, :2]).all() and np.isnan(whole[:, 5:]).all()


def test_source_is_readable():
    node = group_node((Step("Add", ("in0", "in1")), Step("Relu", ("s0",))), [(4, 3), (3,)], (4, 3))
    (got,), _, spec = run_generated(node, [np.ones((4, 3), np.float32), -np.ones(3, np.float32)])
    assert "# nbtrt eltwise kernel for 'grp'" in spec.source and "e1 = max(e0, float32(0.0))" in spec.source

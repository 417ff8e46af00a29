"""Gemm and MatMul kernels in the simulator against the reference: transA/transB/alpha with a C
operand of every broadcast shape, batched MatMul with broadcast batch dims and 1-D operands,
split-K, a strided output, tactic validity."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import assert_matches, run_generated
from nbtrt.codegen import gemm
from nbtrt.codegen.build import load
from nbtrt.codegen.kernel import TensorArg
from nbtrt.groups import Step, group_attrs, group_op
from nbtrt.ir import Graph, Node, TensorType
from nbtrt.reference import KERNELS
from test_conv import bare_floats

TILES = [dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=1), dict(bm=16, bn=32, bk=8, tm=2, tn=4, split_k=1),
         dict(bm=32, bn=16, bk=16, tm=4, tn=2, split_k=1), dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=2),
         dict(bm=16, bn=16, bk=8, tm=2, tn=2, split_k=4, unroll=True),
         dict(bm=16, bn=64, bk=8, tm=4, tn=8, split_k=2)]  # fewer threads than columns


def gemm_group(base, a_shape, b_shape, attrs=None, program=(), extra=()):
    g = Graph()
    ins = [g.add_input(f"x{k}", TensorType("float32", s)) for k, s in enumerate([a_shape, b_shape] + list(extra))]
    attrs = dict(attrs or {})
    probe = Node(base, [], [], attrs, name="probe")
    y = KERNELS[base](probe, np.zeros(a_shape, np.float32), np.zeros(b_shape, np.float32))
    splits = (y.shape[-1],) if base == "Gemm" else ()
    node = g.add_node(group_op(base), ins, attrs=group_attrs(base, attrs, 2, splits, (program,), ("fc", "act")),
                      name="fc")
    node.outputs[0].type = TensorType("float32", y.shape)
    return node


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 37), st.integers(1, 37), st.integers(1, 40), st.booleans(), st.booleans(),
       st.sampled_from([1.0, 0.5, -2.0]), st.sampled_from(["none", "row", "[1,N]", "[M,1]", "[M,N]", "beta"]),
       st.sampled_from(TILES), st.integers(0, 999))
def test_gemm_random(m, n, k, ta, tb, alpha, c_kind, tile, seed):
    rng = np.random.default_rng(seed)
    a_shape = (k, m) if ta else (m, k)
    b_shape = (n, k) if tb else (k, n)
    c_shape = {"none": None, "row": (n,), "[1,N]": (1, n), "[M,1]": (m, 1), "[M,N]": (m, n), "beta": (n,)}[c_kind]
    extra = [] if c_shape is None else [c_shape] + ([()] if c_kind == "beta" else [])
    program = () if c_shape is None else (Step("Add", ("acc", "in2")), Step("Relu", ("s0",)))
    if c_kind == "beta":  # a computed C with beta != 1 arrives as Mul(C, beta)
        program = (Step("Mul", ("in2", "in3")), Step("Add", ("acc", "s0")))
    attrs = dict(transA=int(ta), transB=int(tb), alpha=alpha, beta=1.0)
    node = gemm_group("Gemm", a_shape, b_shape, attrs, program, extra)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [a_shape, b_shape] + extra]
    assert gemm.valid(node, tile)
    assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=tile)


@st.composite
def matmul_shapes(draw):
    m, n, k = draw(st.integers(1, 20)), draw(st.integers(1, 20)), draw(st.integers(1, 24))
    batch = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
    def side(core):
        if draw(st.integers(0, 5)) == 0:
            return (k,)  # 1-D operand
        r = draw(st.integers(0, len(batch)))
        return tuple(1 if draw(st.booleans()) else d for d in batch[len(batch) - r:]) + core
    return side((m, k)), side((k, n))


@settings(max_examples=25, deadline=None)
@given(matmul_shapes(), st.sampled_from(TILES), st.booleans(), st.integers(0, 999))
def test_matmul_batched_broadcast(shapes, tile, with_bias, seed):
    a_shape, b_shape = shapes
    rng = np.random.default_rng(seed)
    probe = gemm_group("MatMul", a_shape, b_shape)
    y_shape = probe.outputs[0].type.shape
    extra = [y_shape[-1:]] if with_bias and len(b_shape) > 1 else []
    program = (Step("Add", ("acc", "in2")), Step("Tanh", ("s0",))) if extra else ()
    node = gemm_group("MatMul", a_shape, b_shape, {}, program, extra)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [a_shape, b_shape] + extra]
    assert_matches(node, arrays, rtol=1e-4, atol=1e-5, tactic=tile)


def test_matmul_residual_into_strided_output():
    """A [2, 5, 6] · B [6, 7] + R, stored as the slice [:, :, 3:10] of a [2, 5, 12] buffer."""
    rng = np.random.default_rng(1)
    node = gemm_group("MatMul", (2, 5, 6), (6, 7), {}, (Step("Add", ("acc", "in2")),), [(2, 5, 7)])
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(2, 5, 6), (6, 7), (2, 5, 7)]]
    dst = TensorArg("out0", "float32", (2, 5, 7), (60, 12, 1), 3)
    (got,), buffers, spec = run_generated(node, arrays, tactic=TILES[3], out_args=[dst], buffer_sizes={"out0": 120})
    np.testing.assert_allclose(got, KERNELS[node.op](node, *arrays)[0], rtol=1e-5, atol=1e-5, err_msg=spec.source)
    whole = buffers["out0"].reshape(2, 5, 12)
    assert np.isnan(whole[:, :, :3]).all() and np.isnan(whole[:, :, 10:]).all()


def test_tactics_source_and_validity():
    node = gemm_group("Gemm", (1, 2048), (1000, 2048), dict(transA=0, transB=1, alpha=1.0, beta=1.0),
                      (Step("Add", ("acc", "in2")),), [(1000,)])
    ins = [TensorArg.contiguous(f"in{k}", "float32", v.type.shape) for k, v in enumerate(node.inputs)]
    outs = [TensorArg.contiguous("out0", "float32", (1, 1000))]
    for tactic in [t for t in gemm.TACTICS if gemm.valid(node, t)]:
        spec = gemm.emit(node, outs, ins, tactic)
        load(spec)
        assert spec.source.startswith("# nbtrt gemm kernel for 'fc'")
        assert not bare_floats(spec.source) and "float64" not in spec.source
    assert gemm.pick(gemm.Problem(node, outs, ins))["split_k"] > 1
    assert not gemm.valid(node, dict(bm=128, bn=128, bk=32, tm=8, tn=8, split_k=2))
    assert not gemm.valid(node, dict(bm=64, bn=64, bk=8, tm=3, tn=8, split_k=1))


def test_vector_dot_and_default_tactic():
    """1-D · 1-D gives a scalar; a 1 × 300 · 300 × 20 Gemm with no tactic takes the split-K default."""
    rng = np.random.default_rng(2)
    dot = gemm_group("MatMul", (13,), (13,))
    assert dot.outputs[0].type.shape == ()
    assert_matches(dot, [rng.standard_normal(13).astype(np.float32) for _ in range(2)], rtol=1e-5, atol=1e-5,
                   tactic=TILES[0])
    fc = gemm_group("Gemm", (1, 300), (20, 300), dict(transA=0, transB=1, alpha=1.0, beta=1.0),
                    (Step("Add", ("acc", "in2")),), [(20,)])
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(1, 300), (20, 300), (20,)]]
    spec = assert_matches(fc, arrays, rtol=1e-4, atol=1e-5)
    assert spec.tactic["split_k"] > 1

"""Copy kernels (Transpose, Concat, Split, Slice, Gather, Expand) in the simulator against the
reference: random shapes and parameters, negative steps and indices, clamped bounds, uneven splits, a
strided output inside a larger concat buffer, and the readable source."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import assert_matches, run_generated
from nbtrt.codegen import generate
from nbtrt.codegen.kernel import TensorArg
from nbtrt.errors import UnsupportedOpError
from nbtrt.ir import Graph, TensorType
from nbtrt.ops import fill_attributes, infer_node

BIG = 2**63 - 1
SETTINGS = settings(max_examples=12, deadline=None)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def make(op, inputs, attrs=None, n_out=1):
    """A one-node graph with inferred types; inputs are TensorTypes (graph inputs), arrays (constants)
    or None. Returns (node, the arrays to run it on: random data for graph inputs)."""
    g, values, arrays = Graph(), [], []
    rng = np.random.default_rng(len(inputs))
    for i, x in enumerate(inputs):
        if x is None:
            values.append(None)
            arrays.append(None)
        elif isinstance(x, TensorType):
            values.append(g.add_input(f"x{i}", x))
            arrays.append(rng.standard_normal(x.shape).astype(x.dtype))
        else:
            values.append(g.add_constant(f"c{i}", np.asarray(x)))
            arrays.append(np.asarray(x))
    node = g.add_node(op, values, n_outputs=n_out, attrs=attrs or {}, name="n1")
    fill_attributes(node)
    infer_node(node)
    return node, arrays


def check(op, inputs, attrs=None, n_out=1, arrays=None, **kw):
    node, made = make(op, inputs, attrs, n_out)
    return assert_matches(node, arrays or made, **kw)


def T(shape, dtype="float32"):
    return TensorType(dtype, tuple(shape))


def i64(*values):
    return np.array(values, dtype=np.int64)


@SETTINGS
@given(shapes, st.randoms(use_true_random=False))
def test_transpose_random_perm(shape, rnd):
    perm = list(range(len(shape)))
    rnd.shuffle(perm)
    check("Transpose", [T(shape)], {"perm": tuple(perm)})


def test_transpose_default_reverses():
    check("Transpose", [T((2, 3, 4))])


@SETTINGS
@given(shapes, st.data())
def test_concat(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3).filter(any))
    a = axis % len(shape)
    check("Concat", [T(shape[:a] + (s,) + shape[a + 1:]) for s in sizes], {"axis": axis})


def test_concat_into_strided_slice_of_larger_buffer():
    # the concat's [2, 5, 3] result is itself the slice [:, 1:6, :] of a [2, 8, 3] concat buffer
    node, arrays = make("Concat", [T((2, 2, 3)), T((2, 3, 3))], {"axis": 1})
    dst = TensorArg("out0", "float32", (2, 5, 3), (24, 3, 1), 3)
    (got,), buffers, _ = run_generated(node, arrays, out_args=[dst], buffer_sizes={"out0": 48})
    np.testing.assert_array_equal(got, np.concatenate(arrays, axis=1))
    whole = buffers["out0"].reshape(2, 8, 3)
    assert np.isnan(whole[:, :1]).all() and np.isnan(whole[:, 6:]).all()


@SETTINGS
@given(shapes, st.data())
def test_split_uneven(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    dim = shape[axis]
    n = data.draw(st.integers(1, 3))
    if data.draw(st.booleans()):
        cuts = sorted(data.draw(st.lists(st.integers(0, dim), min_size=n - 1, max_size=n - 1)))
        split = np.diff([0] + cuts + [dim])
        check("Split", [T(shape), i64(*split)], {"axis": axis}, n_out=n)
    elif -(-dim // n) * (n - 1) <= dim:  # the default chunks of ceil(dim / n), the last one smaller
        check("Split", [T(shape)], {"axis": axis, "num_outputs": n}, n_out=n)


bound = st.one_of(st.integers(-6, 6), st.sampled_from([BIG, -BIG]))


@SETTINGS
@given(shapes, st.data())
def test_slice_negative_steps_and_clamping(shape, data):
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    axes = [a - rank if data.draw(st.booleans()) else a for a in axes]
    starts = [data.draw(bound) for _ in axes]
    ends = [data.draw(bound) for _ in axes]
    steps = [data.draw(st.sampled_from([-3, -2, -1, 1, 2, 3])) for _ in axes]
    check("Slice", [T(shape), i64(*starts), i64(*ends), i64(*axes), i64(*steps)])


def test_slice_without_axes_and_steps():
    check("Slice", [T((5, 6)), i64(-1, 1), i64(-BIG, 5)])


@SETTINGS
@given(shapes, st.data())
def test_gather_constant_negative_indices(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    ishape = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=int(np.prod(ishape)),
                                      max_size=int(np.prod(ishape)))), np.int64).reshape(ishape)
    spec = check("Gather", [T(shape), idx], {"axis": axis})
    assert "INDICES = (" in spec.source or ishape == ()


@SETTINGS
@given(shapes, st.data(), st.sampled_from(["int64", "int32"]))
def test_gather_runtime_indices(shape, data, dtype):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    ishape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    idx = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=int(np.prod(ishape)),
                                      max_size=int(np.prod(ishape)))), dtype).reshape(ishape)
    node, (x, _) = make("Gather", [T(shape), T(ishape, dtype)], {"axis": axis})
    assert_matches(node, [x, idx])


def test_gather_large_constant_indices_read_at_run_time():
    idx = (np.arange(100) % 7 - 3).astype(np.int64)
    node, arrays = make("Gather", [T((7, 2)), idx])
    ins = [TensorArg.contiguous(f"in{k}", a.dtype.name, a.shape) for k, a in enumerate(arrays)]
    spec = generate(node, [TensorArg.contiguous("out0", "float32", (100, 2))], ins)
    assert spec.params == ["out0", "in0", "in1"] and "INDICES" not in spec.source
    assert_matches(node, arrays)


@SETTINGS
@given(shapes, st.data())
def test_expand(shape, data):
    lead = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2)))
    src = tuple(1 if data.draw(st.booleans()) else d for d in shape)
    target = lead + tuple(d if data.draw(st.booleans()) else 1 for d in shape)
    check("Expand", [T(src), i64(*target)])


def test_int_and_bool_dtypes():
    node, _ = make("Transpose", [T((2, 3), "int64")])
    assert_matches(node, [np.arange(6, dtype=np.int64).reshape(2, 3)])
    node, _ = make("Slice", [T((4,), "bool"), i64(3), i64(-BIG), i64(0), i64(-2)])
    assert_matches(node, [np.array([True, False, False, True]), i64(3), i64(-BIG), i64(0), i64(-2)])


def test_runtime_slice_bounds_unsupported():
    node, arrays = make("Slice", [T((4, 4)), T((1,), "int64"), i64(3)])
    ins = [TensorArg.contiguous(f"in{k}", a.dtype.name, a.shape) for k, a in enumerate(arrays)]
    with pytest.raises(UnsupportedOpError, match="n1"):
        generate(node, [TensorArg.contiguous("out0", "float32", (4, 4))], ins)


def test_source_is_readable():
    spec = check("Slice", [T((4, 6)), i64(-1), i64(-BIG), i64(1), i64(-2)])
    assert "# nbtrt copy kernel for 'n1'" in spec.source and "x1 = 5 - c1 * 2" in spec.source
    assert spec.params == ["out0", "in0"]

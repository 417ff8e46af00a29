"""Shape inference and numpy kernels of the NN ops (conv, pools, norms, gemm/matmul, LRN, softmax).

Graphs are built directly in the IR; kernels are checked against naive loop implementations written
here (tiny shapes), against each other (ConvTranspose is the adjoint of Conv) and against the shapes
inference promised.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbtrt.errors import AttributeValueError, ShapeError
from nbtrt.ir import Graph, TensorType
from nbtrt.ops import fill_attributes, infer_node
from nbtrt.reference.nn import KERNELS


def make(op, shapes, attrs=None, dtype="float32", n_out=1, dtypes=None, name="n0"):
    """A one-node graph; ``shapes`` holds a shape, an ndarray (a constant) or None (omitted input)."""
    g = Graph()
    inputs = []
    for i, s in enumerate(shapes):
        if s is None:
            inputs.append(None)
        elif isinstance(s, np.ndarray):
            inputs.append(g.add_constant(f"c{i}", s))
        else:
            dt = dtypes[i] if dtypes else dtype
            inputs.append(g.add_input(f"x{i}", TensorType(dt, tuple(s))))
    node = g.add_node(op, inputs, n_out, attrs, name=name)
    fill_attributes(node)
    infer_node(node)
    return node


def shape(op, shapes, attrs=None, **kw):
    return make(op, shapes, attrs, **kw).outputs[0].type.shape


def run(node, *arrays):
    """Run the kernel and check it against the inferred output types."""
    out = KERNELS[node.op](node, *arrays)
    outs = out if isinstance(out, tuple) else (out,)
    for v, r in zip(node.outputs, outs):
        assert r.dtype.name == v.type.dtype, (r.dtype, v.type)
        assert len(r.shape) == len(v.type.shape)
        assert all(d is None or isinstance(d, str) or d == s for d, s in zip(v.type.shape, r.shape))
    return out


def rand(*s, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(s).astype(dtype)


# -- naive oracles (loops; tiny shapes only) --------------------------------------------------------
def naive_conv(x, w, b, strides, pads, dilations, group):
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    k = w.shape[2:]
    nsp = len(k)
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[i], pads[i + nsp]) for i in range(nsp)])
    out = [(xp.shape[2 + i] - (k[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(nsp)]
    y = np.zeros((n, m, *out))
    for ni, mi in itertools.product(range(n), range(m)):
        g = mi // (m // group)
        for o in itertools.product(*map(range, out)):
            acc = 0.0
            for ci in range(cg):
                for j in itertools.product(*map(range, k)):
                    pos = tuple(o[i] * strides[i] + j[i] * dilations[i] for i in range(nsp))
                    acc += xp[(ni, g * cg + ci) + pos] * w[(mi, ci) + j]
            y[(ni, mi) + o] = acc + (0 if b is None else b[mi])
    return y


def naive_pool(x, kernel, strides, pads, mode, count_include_pad=0):
    nsp = len(kernel)
    n, c = x.shape[:2]
    out = [(x.shape[2 + i] + pads[i] + pads[i + nsp] - kernel[i]) // strides[i] + 1 for i in range(nsp)]
    y = np.zeros((n, c, *out))
    for ni, ci in itertools.product(range(n), range(c)):
        for o in itertools.product(*map(range, out)):
            vals, cells = [], 0
            for j in itertools.product(*map(range, kernel)):
                pos = tuple(o[i] * strides[i] - pads[i] + j[i] for i in range(nsp))
                cells += 1
                if all(0 <= p < s for p, s in zip(pos, x.shape[2:])):
                    vals.append(x[(ni, ci) + pos])
            y[(ni, ci) + o] = max(vals) if mode == "max" else sum(vals) / (cells if count_include_pad else len(vals))
    return y


# -- Conv -------------------------------------------------------------------------------------------
def test_conv_shapes_symbolic_batch():
    assert shape("Conv", [("N", 3, 224, 224), (64, 3, 7, 7)], {"strides": (2, 2), "pads": (3, 3, 3, 3)}) \
        == ("N", 64, 112, 112)
    assert shape("Conv", [("N", 3, "H", 32), (8, 3, 3, 3), (8,)]) == ("N", 8, None, 30)
    assert shape("Conv", [(1, 4, 10), (6, 2, 3)], {"group": 2, "dilations": (2,)}) == (1, 6, 6)
    assert shape("Conv", [(1, 2, 5, 5, 5), (4, 2, 3, 3, 3)], {"auto_pad": "SAME_UPPER", "strides": (2, 2, 2)}) \
        == (1, 4, 3, 3, 3)
    assert shape("Conv", [(1, 2, 5, 6), (4, 2, 3, 3)], {"auto_pad": "VALID"}) == (1, 4, 3, 4)
    assert shape("Conv", [(2, 32, 7, 7), (32, 1, 3, 3)], {"group": 32, "pads": (1, 1, 1, 1)}) == (2, 32, 7, 7)


@pytest.mark.parametrize("shapes, attrs, err, match", [
    ([(1, 3, 8, 8), (4, 2, 3, 3)], {}, ShapeError, "channels"),
    ([(1, 4, 8, 8), (4, 2, 3, 3)], {"group": 3}, ShapeError, "group"),
    ([(1, 4, 8, 8), (3, 2, 3, 3)], {"group": 2}, ShapeError, "output channels"),
    ([(1, 3, 8, 8), (4, 3, 3)], {}, ShapeError, "rank"),
    ([(3, 8), (4, 3, 3)], {}, ShapeError, "rank"),
    ([(1, 3, 8, 8), (4, 3, 3, 3), (5,)], {}, ShapeError, "bias"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"strides": (0, 1)}, AttributeValueError, "strides"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"strides": (-1, 1)}, AttributeValueError, "strides"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"dilations": (1, 0)}, AttributeValueError, "dilations"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"pads": (1, 1)}, AttributeValueError, "pads"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"pads": (1, 1, -1, 1)}, AttributeValueError, "pads"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"group": 0}, AttributeValueError, "group"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"auto_pad": "SAME"}, AttributeValueError, "auto_pad"),
    ([(1, 3, 8, 8), (4, 3, 3, 3)], {"kernel_shape": (5, 5)}, ShapeError, "kernel_shape"),
    ([(1, 3, 2, 8), (4, 3, 3, 3)], {}, ShapeError, "larger than the padded input"),
    ([(1, 3, 4, 8), (4, 3, 3, 3)], {"dilations": (2, 1)}, ShapeError, "larger than the padded input"),
    ([(1, 3, 2, 8), (4, 3, 3, 3)], {"auto_pad": "VALID"}, ShapeError, "larger than the padded input"),
])
def test_conv_errors_name_the_node(shapes, attrs, err, match):
    with pytest.raises(err, match=match) as info:
        make("Conv", shapes, attrs, name="conv_7")
    assert "conv_7" in str(info.value)


def test_conv_dtype_mismatch():
    with pytest.raises(ShapeError, match="float16"):
        make("Conv", [(1, 3, 8, 8), (4, 3, 3, 3)], dtypes=["float32", "float16"])
    with pytest.raises(ShapeError, match="not supported"):
        make("Conv", [(1, 3, 8, 8), (4, 3, 3, 3)], dtype="int32")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.sampled_from([1, 2]), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2),
       st.integers(1, 2), st.integers(0, 1))
def test_conv_matches_naive(nsp, group, k, s, p, d, use_bias):
    size = [(k - 1) * d + 3 + i for i in range(nsp)]
    x, w = rand(2, 2 * group, *size), rand(3 * group, 2, *([k] * nsp), seed=1)
    b = rand(3 * group, seed=2) if use_bias else None
    attrs = {"strides": (s,) * nsp, "pads": (p,) * nsp + (p + 1,) * nsp, "dilations": (d,) * nsp, "group": group}
    node = make("Conv", [x.shape, w.shape, None if b is None else b.shape], attrs)
    want = naive_conv(x, w, b, attrs["strides"], attrs["pads"], attrs["dilations"], group)
    np.testing.assert_allclose(run(node, x, w, b), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("auto_pad, size, stride", [("SAME_UPPER", 7, 2), ("SAME_LOWER", 7, 2),
                                                     ("SAME_UPPER", 6, 1), ("SAME_LOWER", 6, 3), ("VALID", 7, 2)])
def test_conv_auto_pad_matches_explicit(auto_pad, size, stride):
    x, w = rand(1, 2, size, size), rand(3, 2, 4, 4, seed=1)
    node = make("Conv", [x.shape, w.shape], {"auto_pad": auto_pad, "strides": (stride, stride)})
    out = node.outputs[0].type.shape[2]
    total = max(0, (out - 1) * stride + 4 - size) if auto_pad != "VALID" else 0
    lo = total // 2 if auto_pad != "SAME_LOWER" else total - total // 2
    want = naive_conv(x, w, None, (stride, stride), (lo, lo, total - lo, total - lo), (1, 1), 1)
    np.testing.assert_allclose(run(node, x, w), want, rtol=1e-4, atol=1e-4)
    if auto_pad.startswith("SAME"):
        assert out == -(-size // stride)


def test_conv_float16_keeps_dtype():
    x, w = rand(1, 3, 6, 6, dtype=np.float16), rand(2, 3, 3, 3, dtype=np.float16)
    node = make("Conv", [x.shape, w.shape], dtype="float16")
    y = run(node, x, w)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, naive_conv(x, w, None, (1, 1), (0,) * 4, (1, 1), 1), rtol=1e-2, atol=1e-2)


def test_conv_large_layer_is_fast():
    x, w = rand(1, 64, 224, 224), rand(64, 64, 3, 3, seed=1)
    node = make("Conv", [x.shape, w.shape], {"pads": (1, 1, 1, 1)})
    y = run(node, x, w)  # a VGG-19 block-1 layer; im2col + matmul, well under a few seconds
    assert y.shape == (1, 64, 224, 224)
    np.testing.assert_allclose(y[0, 5, 100, 37], np.sum(x[0, :, 99:102, 36:39] * w[5]), rtol=1e-4, atol=1e-4)


# -- ConvTranspose ----------------------------------------------------------------------------------
def test_conv_transpose_shapes():
    assert shape("ConvTranspose", [("N", 4, 5, 5), (4, 3, 3, 3)], {"strides": (2, 2)}) == ("N", 3, 11, 11)
    assert shape("ConvTranspose", [(1, 4, 5, 5), (4, 3, 3, 3)],
                 {"strides": (2, 2), "pads": (1, 1, 1, 1), "output_padding": (1, 1)}) == (1, 3, 10, 10)
    assert shape("ConvTranspose", [(1, 4, 3, 3), (4, 1, 3, 3)], {"group": 2, "strides": (3, 2),
                                                                  "output_shape": (10, 8)}) == (1, 2, 10, 8)
    assert shape("ConvTranspose", [(1, 1, 3, 3), (1, 2, 3, 3)], {"auto_pad": "SAME_UPPER", "strides": (2, 2)}) \
        == (1, 2, 6, 6)
    assert shape("ConvTranspose", [(1, 1, 3), (1, 2, 3)], {"dilations": (2,)}) == (1, 2, 7)
    assert shape("ConvTranspose", [("N", 1, "H", 3), (1, 2, 3, 3)]) == ("N", 2, None, 5)


@pytest.mark.parametrize("shapes, attrs, err, match", [
    ([(1, 4, 5, 5), (3, 3, 3, 3)], {}, ShapeError, "channels"),
    ([(1, 4, 5, 5), (4, 3, 3, 3)], {"group": 3}, ShapeError, "group"),
    ([(1, 4, 5, 5), (4, 3, 3, 3), (4,)], {}, ShapeError, "bias"),
    ([(1, 4, 5, 5), (4, 3, 3, 3)], {"output_padding": (-1, 0)}, AttributeValueError, "output_padding"),
    ([(1, 4, 5, 5), (4, 3, 3, 3)], {"output_shape": (4, 4, 4)}, AttributeValueError, "output_shape"),
    ([(1, 4, 2, 2), (4, 3, 3, 3)], {"pads": (2, 2, 2, 2)}, ShapeError, "no output"),
    ([(1, 4, 5, 5), (4, 3, 3, 3)], {"strides": (0, 1)}, AttributeValueError, "strides"),
])
def test_conv_transpose_errors(shapes, attrs, err, match):
    with pytest.raises(err, match=match) as info:
        make("ConvTranspose", shapes, attrs, name="deconv")
    assert "deconv" in str(info.value)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 2), st.sampled_from([1, 2]), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1),
       st.integers(1, 2))
def test_conv_transpose_is_adjoint_of_conv(nsp, group, k, s, p, d):
    """<Conv(x), y> == <x, ConvTranspose(y)> with the same W and geometry."""
    size = [(k - 1) * d + 2 + s * i for i in range(nsp)]
    x, w = rand(2, 2 * group, *size, dtype=np.float64), rand(3 * group, 2, *([k] * nsp), dtype=np.float64)
    attrs = {"strides": (s,) * nsp, "pads": (p,) * (2 * nsp), "dilations": (d,) * nsp, "group": group}
    cnode = make("Conv", [x.shape, w.shape], attrs, dtype="float64")
    cy = run(cnode, x, w)
    y = rand(*cy.shape, dtype=np.float64, seed=5)
    extra = [size[i] + 2 * p - ((k - 1) * d + 1) - s * (cy.shape[2 + i] - 1) for i in range(nsp)]
    tnode = make("ConvTranspose", [y.shape, w.shape], {**attrs, "output_padding": tuple(extra)}, dtype="float64")
    tx = run(tnode, y, w)
    assert tx.shape == x.shape
    np.testing.assert_allclose(np.vdot(cy, y), np.vdot(x, tx), rtol=1e-9)


def test_conv_transpose_output_shape_extends_with_zeros():
    x, w, b = rand(1, 1, 3, 3), rand(1, 2, 3, 3, seed=1), np.array([0.5, -1], np.float32)
    full = run(make("ConvTranspose", [x.shape, w.shape, b.shape], {"strides": (3, 2)}), x, w, b)  # (9, 7)
    node = make("ConvTranspose", [x.shape, w.shape, b.shape], {"strides": (3, 2), "output_shape": (10, 6)})
    y = run(node, x, w, b)
    assert y.shape == (1, 2, 10, 6)
    np.testing.assert_allclose(y[:, :, :9], full[:, :, :, 1:7])  # W: crop 1 at the start (total 1)
    np.testing.assert_allclose(y[0, :, 9], np.broadcast_to(b[:, None], (2, 6)))


# -- pools ------------------------------------------------------------------------------------------
def test_pool_shapes():
    assert shape("MaxPool", [("N", 64, 112, 112)], {"kernel_shape": (3, 3), "strides": (2, 2),
                                                    "pads": (1, 1, 1, 1)}) == ("N", 64, 56, 56)
    assert shape("MaxPool", [(1, 1, 5, 5)], {"kernel_shape": (2, 2), "strides": (2, 2), "ceil_mode": 1}) \
        == (1, 1, 3, 3)
    assert shape("AveragePool", [(1, 1, 4, 4)], {"kernel_shape": (3, 3), "strides": (2, 2), "ceil_mode": 1,
                                                 "pads": (1, 1, 1, 1)}) == (1, 1, 3, 3)
    assert shape("AveragePool", [(1, 1, 32)], {"kernel_shape": (2,), "auto_pad": "SAME_LOWER"}) == (1, 1, 32)
    assert shape("AveragePool", [(1, 2, "H", 7, 9)], {"kernel_shape": (2, 2, 2), "dilations": (1, 2, 3)}) \
        == (1, 2, None, 5, 6)
    assert shape("GlobalAveragePool", [("N", 2048, 7, 7)]) == ("N", 2048, 1, 1)
    assert shape("GlobalMaxPool", [(1, 3, 4)]) == (1, 3, 1)
    node = make("MaxPool", [("N", 3, 8, 8)], {"kernel_shape": (2, 2)}, n_out=2)
    assert node.outputs[1].type == TensorType("int64", ("N", 3, 7, 7))


@pytest.mark.parametrize("op, shp, attrs, err, match", [
    ("MaxPool", (1, 3, 8, 8), {}, AttributeValueError, "kernel_shape"),
    ("MaxPool", (1, 3, 8, 8), {"kernel_shape": (2,)}, AttributeValueError, "kernel_shape"),
    ("MaxPool", (1, 3, 8, 8), {"kernel_shape": (0, 2)}, AttributeValueError, "kernel shape"),
    ("MaxPool", (1, 3, 8, 8), {"kernel_shape": (9, 2)}, ShapeError, "larger than the padded input"),
    ("MaxPool", (1, 3, 8, 8), {"kernel_shape": (2, 2), "strides": (0, 1)}, AttributeValueError, "strides"),
    ("MaxPool", (1, 3, 8, 8), {"kernel_shape": (2, 2), "pads": (1, 1, 1)}, AttributeValueError, "pads"),
    ("MaxPool", (1, 3, 8, 8), {"kernel_shape": (2, 2), "storage_order": 2}, AttributeValueError, "storage"),
    ("MaxPool", (3, 8), {"kernel_shape": (2,)}, ShapeError, "rank"),
    ("AveragePool", (1, 3, 8, 8), {"kernel_shape": (2, 2), "ceil_mode": 3}, AttributeValueError, "ceil_mode"),
    ("AveragePool", (1, 3, 8, 8), {"kernel_shape": (2, 2), "auto_pad": "FOO"}, AttributeValueError, "auto_pad"),
    ("GlobalAveragePool", (8, 8), {}, ShapeError, "rank"),
])
def test_pool_errors(op, shp, attrs, err, match):
    with pytest.raises(err, match=match) as info:
        make(op, [shp], attrs, name="pool_3")
    assert "pool_3" in str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.integers(0, 1))
def test_pools_match_naive(nsp, k, s, p, count_include_pad):
    p = min(p, k - 1)  # ONNX: pads smaller than the kernel
    x = rand(2, 3, *[k + 2 + i for i in range(nsp)])
    attrs = {"kernel_shape": (k,) * nsp, "strides": (s,) * nsp, "pads": (p,) * (2 * nsp)}
    pads = attrs["pads"]
    y = run(make("MaxPool", [x.shape], attrs), x)
    np.testing.assert_allclose(y, naive_pool(x, attrs["kernel_shape"], attrs["strides"], pads, "max"))
    node = make("AveragePool", [x.shape], {**attrs, "count_include_pad": count_include_pad})
    want = naive_pool(x, attrs["kernel_shape"], attrs["strides"], pads, "avg", count_include_pad)
    np.testing.assert_allclose(run(node, x), want, rtol=1e-5, atol=1e-6)


def test_max_pool_indices_row_and_column_major():
    x = rand(2, 3, 5, 4)
    for order in (0, 1):
        node = make("MaxPool", [x.shape], {"kernel_shape": (2, 2), "pads": (1, 0, 0, 1), "strides": (2, 1),
                                           "storage_order": order}, n_out=2)
        y, idx = run(node, x)
        assert idx.dtype == np.int64
        flat = x.ravel() if order == 0 else x.transpose(0, 1, 3, 2).ravel()
        np.testing.assert_array_equal(flat[idx], y)


def test_ceil_mode_drops_window_starting_in_padding_and_int8():
    x = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
    node = make("MaxPool", [x.shape], {"kernel_shape": (2, 2), "strides": (2, 2), "pads": (0, 0, 1, 1),
                                       "ceil_mode": 1}, dtype="int8")
    y = run(node, x)  # 4 + 1 padded, k 2, s 2: ceil gives 3 windows, the 3rd starts in the padding
    assert y.shape == (1, 1, 2, 2) and y.dtype == np.int8
    np.testing.assert_array_equal(y[0, 0], [[5, 7], [13, 15]])
    avg = make("AveragePool", [(1, 1, 5, 5)], {"kernel_shape": (2, 2), "strides": (2, 2), "ceil_mode": 1,
                                               "count_include_pad": 1})
    xa = np.ones((1, 1, 5, 5), np.float32)
    np.testing.assert_allclose(run(avg, xa), np.ones((1, 1, 3, 3)))  # ceil cells are never counted


def test_global_pools():
    x = rand(2, 3, 4, 5)
    np.testing.assert_allclose(run(make("GlobalAveragePool", [x.shape]), x), x.mean((2, 3), keepdims=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(run(make("GlobalMaxPool", [x.shape]), x), x.max((2, 3), keepdims=True))


# -- normalizations ---------------------------------------------------------------------------------
def test_batch_norm():
    x, s, b, m, v = rand(2, 3, 4, 4), rand(3, seed=1), rand(3, seed=2), rand(3, seed=3), np.abs(rand(3, seed=4))
    node = make("BatchNormalization", [x.shape, (3,), (3,), (3,), (3,)], {"epsilon": 1e-3})
    assert node.outputs[0].type.shape == (2, 3, 4, 4)
    want = (x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-3) * s[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(run(node, x, s, b, m, v), want, rtol=1e-5, atol=1e-5)
    train = make("BatchNormalization", [x.shape, (3,), (3,), (3,), (3,)], {"training_mode": 1}, n_out=3)
    y, rm, rv = run(train, x, s, b, m, v)
    np.testing.assert_allclose(rm, 0.9 * m + 0.1 * x.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, 0.9 * v + 0.1 * x.var((0, 2, 3)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op, shapes, attrs, n_out, err, match", [
    ("BatchNormalization", [(2, 3, 4), (4,), (3,), (3,), (3,)], {}, 1, ShapeError, "scale"),
    ("BatchNormalization", [(2, 3, 4), (3,), (3,), (3,), (3, 1)], {}, 1, ShapeError, "var"),
    ("BatchNormalization", [(3,), (3,), (3,), (3,), (3,)], {}, 1, ShapeError, "rank"),
    ("BatchNormalization", [(2, 3), (3,), (3,), (3,), (3,)], {}, 3, ShapeError, "training_mode"),
    ("InstanceNormalization", [(2, 3, 4), (3,), (2,)], {}, 1, ShapeError, "B"),
    ("InstanceNormalization", [(2, 3), (3,), (3,)], {}, 1, ShapeError, "rank"),
    ("LayerNormalization", [(2, 3, 4), (3,)], {}, 1, ShapeError, "Scale"),
    ("LayerNormalization", [(2, 3, 4), (4,), (5,)], {}, 1, ShapeError, "B"),
    ("LayerNormalization", [(2, 3, 4), (4,)], {"axis": 3}, 1, AttributeValueError, "axis"),
    ("LayerNormalization", [(2, 3, 4), (4,)], {"stash_type": 7}, 1, AttributeValueError, "stash_type"),
])
def test_norm_errors(op, shapes, attrs, n_out, err, match):
    with pytest.raises(err, match=match) as info:
        make(op, shapes, attrs, n_out=n_out, name="norm_1")
    assert "norm_1" in str(info.value)


def test_instance_norm():
    x, s, b = rand(2, 3, 5, 4), rand(3, seed=1), rand(3, seed=2)
    node = make("InstanceNormalization", [x.shape, (3,), (3,)])
    mu, var = x.mean((2, 3), keepdims=True), x.var((2, 3), keepdims=True)
    want = (x - mu) / np.sqrt(var + 1e-5) * s[:, None, None] + b[:, None, None]
    np.testing.assert_allclose(run(node, x, s, b), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, -2, 0, 1])
def test_layer_norm(axis):
    x = rand(2, 3, 4, dtype=np.float16)
    norm_shape = x.shape[axis % 3:]
    s, b = rand(*norm_shape, dtype=np.float16, seed=1), rand(*norm_shape, dtype=np.float16, seed=2)
    node = make("LayerNormalization", [("N", 3, 4), s.shape, b.shape], {"axis": axis}, dtype="float16", n_out=3)
    a = axis % 3
    assert node.outputs[0].type == TensorType("float16", ("N", 3, 4))
    assert node.outputs[1].type == TensorType("float32", ("N", 3, 4)[:a] + (1,) * (3 - a))
    y, mean, inv = run(node, x, s, b)
    axes = tuple(range(a, 3))
    x32 = x.astype(np.float32)
    want_inv = 1 / np.sqrt(x32.var(axes, keepdims=True) + 1e-5)
    np.testing.assert_allclose(mean, x32.mean(axes, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inv, want_inv, rtol=1e-4)
    want = (x32 - x32.mean(axes, keepdims=True)) * want_inv * s + b
    np.testing.assert_allclose(y.astype(np.float32), want, rtol=1e-2, atol=1e-2)


# -- Gemm / MatMul ----------------------------------------------------------------------------------
def test_gemm():
    assert shape("Gemm", [("N", 2048), (1000, 2048), (1000,)], {"transB": 1}) == ("N", 1000)
    assert shape("Gemm", [(4, 3), (4, 5)], {"transA": 1}) == (3, 5)
    a, b, c = rand(3, 4), rand(5, 4, seed=1), rand(3, 1, seed=2)
    node = make("Gemm", [a.shape, b.shape, c.shape], {"transB": 1, "alpha": 0.5, "beta": 2.0})
    np.testing.assert_allclose(run(node, a, b, c), 0.5 * a @ b.T + 2 * c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(make("Gemm", [a.shape, (4, 2)]), a, np.ones((4, 2), np.float32)),
                               a.sum(1, keepdims=True).repeat(2, 1), rtol=1e-5)


@pytest.mark.parametrize("shapes, attrs, match", [
    ([(3, 4), (5, 4)], {}, "inner dims"),
    ([(3, 4), (4, 5), (3, 4)], {}, "broadcast"),
    ([(3, 4), (4, 5), (2, 3, 5)], {}, "broadcast"),
    ([(3, 4, 1), (4, 5)], {}, "matrices"),
])
def test_gemm_errors(shapes, attrs, match):
    with pytest.raises(ShapeError, match=match) as info:
        make("Gemm", shapes, attrs, name="fc")
    assert "fc" in str(info.value)


@pytest.mark.parametrize("a, b, want", [
    ((3, 4), (4, 5), (3, 5)),
    ((4,), (4,), ()),
    ((4,), (2, 4, 5), (2, 5)),
    ((2, 3, 4), (4,), (2, 3)),
    (("N", 1, 3, 4), (5, 4, 6), ("N", 5, 3, 6)),
    (("B", "S", 64), (64, 128), ("B", "S", 128)),
    (("B", "S", "D"), (64, 128), ("B", "S", 128)),
])
def test_matmul_shapes(a, b, want):
    assert shape("MatMul", [a, b]) == want
    if all(isinstance(d, int) for d in a + b):
        x, y = rand(*a), rand(*b, seed=1)
        np.testing.assert_allclose(run(make("MatMul", [a, b]), x, y), np.matmul(x, y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("a, b", [((3, 4), (5, 6)), ((4,), (5,)), ((2, 3, 4), (3, 4, 5)), ((), (3,))])
def test_matmul_errors(a, b):
    with pytest.raises(ShapeError) as info:
        make("MatMul", [a, b], name="mm")
    assert "mm" in str(info.value)


def test_matmul_int_and_half():
    a, b = np.arange(6, dtype=np.int32).reshape(2, 3), np.arange(3, dtype=np.int32)
    np.testing.assert_array_equal(run(make("MatMul", [a.shape, b.shape], dtype="int32"), a, b), a @ b)
    h = rand(2, 3, dtype=np.float16)
    assert run(make("MatMul", [h.shape, (3, 2)], dtype="float16"), h, h.T.copy()).dtype == np.float16


# -- LRN / Softmax ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_lrn(size):
    x = rand(2, 7, 3, 3)
    node = make("LRN", [x.shape], {"size": size, "alpha": 0.01, "beta": 0.6, "bias": 2.0})
    want = np.empty_like(x)
    for c in range(7):
        lo, hi = max(0, c - (size - 1) // 2), min(6, c + -(-(size - 1) // 2))
        sq = (x[:, lo:hi + 1] ** 2).sum(1)
        want[:, c] = x[:, c] / (2.0 + 0.01 / size * sq) ** 0.6
    np.testing.assert_allclose(run(node, x), want, rtol=1e-5)


def test_lrn_errors():
    with pytest.raises(AttributeValueError, match="size") as info:
        make("LRN", [(1, 3, 4, 4)], name="lrn0")
    assert "lrn0" in str(info.value)
    with pytest.raises(AttributeValueError, match="size"):
        make("LRN", [(1, 3, 4, 4)], {"size": 0})


@pytest.mark.parametrize("axis", [-1, 0, 1, 2])
def test_softmax(axis):
    x = rand(2, 3, 4) * 50
    node = make("Softmax", [("N", 3, 4)], {"axis": axis})
    assert node.outputs[0].type.shape == ("N", 3, 4)
    e = np.exp(x.astype(np.float64) - x.max(axis, keepdims=True))
    np.testing.assert_allclose(run(node, x), e / e.sum(axis, keepdims=True), rtol=1e-5, atol=1e-7)
    log = run(make("LogSoftmax", [x.shape], {"axis": axis}), x)
    np.testing.assert_allclose(log, np.log(e / e.sum(axis, keepdims=True)), rtol=1e-5, atol=1e-5)


def test_softmax_axis_out_of_range():
    with pytest.raises(AttributeValueError, match="axis") as info:
        make("Softmax", [(2, 3)], {"axis": 2}, name="sm")
    assert "sm" in str(info.value)


# -- unknown ranks (e.g. behind a Reshape by a computed shape) ---------------------------------------
def test_unknown_rank_inputs_infer_what_they_can():
    g = Graph()
    x = g.add_input("x", TensorType("float32", None))
    w = g.add_constant("w", rand(8, 3, 3, 3))
    cases = [("Conv", [x, w], {}, ("float32", (None, 8, None, None))),
             ("MaxPool", [x], {"kernel_shape": (2, 2)}, ("float32", (None, None, None, None))),
             ("GlobalAveragePool", [x], {}, ("float32", None)),
             ("Gemm", [x, g.add_constant("b", rand(4, 5))], {}, ("float32", (None, 5))),
             ("MatMul", [x, g.add_constant("m", rand(4, 5))], {}, ("float32", None)),
             ("Softmax", [x], {}, ("float32", None)),
             ("LayerNormalization", [x, g.add_constant("s", rand(4))], {}, ("float32", None))]
    for op, inputs, attrs, (dtype, shp) in cases:
        node = g.add_node(op, inputs, 1, attrs)
        fill_attributes(node)
        infer_node(node)
        assert node.outputs[0].type == TensorType(dtype, shp), op

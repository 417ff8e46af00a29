"""Darknet frontend: cfg + .weights -> IR; checked against a numpy transcription of darknet's forward."""

import os

import numpy as np
import pytest
from conftest import SHARED
from darknet_region_ref import forward_region
from darknet_weights import to_bytes, write_weights

import nbtrt
from nbtrt import reference
from nbtrt.errors import (
    AttributeValueError,
    ModelLoadError,
    NbtrtError,
    UnsupportedOpError,
)
from nbtrt.frontends.darknet import parse_darknet, read_cfg

CFG = os.path.join(SHARED, "darknet")
NAMES = ("yolov2-tiny-voc", "yolov2-tiny", "yolov2-voc", "yolov2")

TOY = """[net]
batch=1
width=12
height=12
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[convolutional]
filters=4
size=1
stride=1
pad=1
activation=linear

[route]
layers=-1,-2

[reorg]
stride=2

[maxpool]
size=3
stride=2

[convolutional]
batch_normalize=1
filters=6
size=3
stride=2
pad=1
activation=logistic

[route]
layers = 4

[maxpool]
size=2
stride=2

[convolutional]
filters=5
size=1
stride=1
activation=relu
"""


# -- numpy transcription of darknet's forward pass (loops of the C code, vectorized over channels) -----
def dn_conv(x, p, size, stride, pad, bn, activation):
    n, _, h, w = x.shape
    oh, ow = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    wt = p["weights"].astype(np.float64)
    out = np.zeros((n, wt.shape[0], oh, ow))
    for ky in range(size):
        for kx in range(size):
            patch = xp[:, :, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride]
            out += np.einsum("nchw,fc->nfhw", patch, wt[:, :, ky, kx])
    col = (slice(None), None, None)
    if bn:  # normalize_gpu: (x - mean) / sqrt(var + .00001), then scale_bias, add_bias
        out = (out - p["rolling_mean"][col]) / np.sqrt(p["rolling_variance"][col] + 1e-5)
        out = out * p["scales"][col]
    out = out + p["biases"][col]
    act = {"leaky": lambda v: np.where(v > 0, v, 0.1 * v), "linear": lambda v: v,
           "relu": lambda v: np.maximum(v, 0), "logistic": lambda v: 1 / (1 + np.exp(-v))}[activation]
    return act(out)


def dn_maxpool(x, size, stride, padding):
    """forward_maxpool_layer: windows start at -pad/2, out of range reads -FLT_MAX."""
    n, c, h, w = x.shape
    oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
    off = -(padding // 2)
    out = np.full((n, c, oh, ow), -np.finfo(np.float32).max)
    for i in range(oh):
        for j in range(ow):
            for a in range(size):
                for b in range(size):
                    ch, cw = off + i * stride + a, off + j * stride + b
                    if 0 <= ch < h and 0 <= cw < w:
                        out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, ch, cw])
    return out


def reorg_cpu(x, w, h, c, batch, stride, forward):
    """blas.c reorg_cpu, transcribed literally (flat arrays)."""
    out = np.zeros_like(x)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out


def darknet_forward(cfg, params, x):
    """The network's output (the region layer's, or the last layer's), computed as darknet does."""
    params = iter(params)
    outs = []
    for layer, (kind, o) in enumerate(read_cfg(cfg)[1:]):
        def geti(k, d=None, o=o):
            return int(o.get(k, d))
        if kind == "convolutional":
            size = geti("size", 1)
            pad = size // 2 if geti("pad", 0) else geti("padding", 0)
            x = dn_conv(x, next(params), size, geti("stride", 1), pad, geti("batch_normalize", 0),
                        o.get("activation", "logistic"))
        elif kind == "maxpool":
            size = geti("size", geti("stride", 1))
            x = dn_maxpool(x, size, geti("stride", 1), geti("padding", size - 1))
        elif kind == "route":
            x = np.concatenate([outs[layer + r if r < 0 else r] for r in map(int, o["layers"].split(","))], 1)
        elif kind == "reorg":
            s = geti("stride")
            n, c, h, w = x.shape
            x = reorg_cpu(x.reshape(-1), w, h, c, n, s, 0).reshape(n, c * s * s, h // s, w // s)
        elif kind == "region":
            x = forward_region(x, geti("num", 1), geti("classes", 20), geti("coords", 4), geti("softmax", 0),
                               geti("background", 0))
            break
        outs.append(x)
    return x


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(weights path, params) per shipped cfg name, written once per module (seed 1)."""
    cache = {}

    def get(name):
        if name not in cache:
            path = tmp_path_factory.mktemp("darknet") / f"{name}.weights"
            cache[name] = path, write_weights(os.path.join(CFG, name + ".cfg"), path, seed=1)
        return cache[name]
    return get


@pytest.fixture
def toy(tmp_path):
    cfg = tmp_path / "toy.cfg"
    cfg.write_text(TOY)
    weights = tmp_path / "toy.weights"
    params = write_weights(cfg, weights, seed=3)
    return cfg, weights, params


def test_toy_matches_darknet(toy):
    cfg, weights, params = toy
    g = parse_darknet(cfg, weights, batch=2)
    assert g.inputs[0].name == "data" and g.inputs[0].type.shape == (2, 3, 12, 12)
    assert g.region is None
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    (y,) = reference.run(g, {"data": x}).values()
    expected = darknet_forward(cfg, params, x)
    assert y.shape == expected.shape == (2, 5, 3, 3)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    ops = [n.op for n in g.nodes]
    assert ops.count("Concat") == 1 and ops.count("Transpose") == 1 and "Sigmoid" in ops and "Relu" in ops


def test_reorg_matches_reorg_cpu(tmp_path):
    cfg = tmp_path / "reorg.cfg"
    cfg.write_text("[net]\nwidth=6\nheight=4\nchannels=8\n\n[reorg]\nstride=2\n")
    g = parse_darknet(cfg, batch=2)
    x = np.arange(2 * 8 * 4 * 6, dtype=np.float32).reshape(2, 8, 4, 6)
    (y,) = reference.run(g, {"data": x}).values()
    expected = reorg_cpu(x.reshape(-1), 6, 4, 8, 2, 2, 0).reshape(2, 32, 2, 3)
    np.testing.assert_array_equal(y, expected)


def test_maxpool_odd_sizes(tmp_path):
    cfg = tmp_path / "pool.cfg"
    cfg.write_text("[net]\nwidth=13\nheight=7\nchannels=2\n\n[maxpool]\nsize=2\nstride=2\n\n"
                   "[maxpool]\nsize=2\nstride=1\n\n[maxpool]\nsize=3\nstride=2\npadding=1\n")
    g = parse_darknet(cfg, batch=1)
    x = np.random.default_rng(1).standard_normal((1, 2, 7, 13)).astype(np.float32)
    (y,) = reference.run(g, {"data": x}).values()
    np.testing.assert_array_equal(y, darknet_forward(cfg, [], x))
    assert [n.outputs[0].type.shape for n in g.nodes] == [(1, 2, 4, 7), (1, 2, 4, 7), (1, 2, 2, 3)]


@pytest.mark.parametrize("name", NAMES)
def test_each_cfg_parses_with_random_weights(written, name):
    cfg = os.path.join(CFG, name + ".cfg")
    weights, _ = written(name)
    g = parse_darknet(cfg, weights, batch=1)
    out = {"yolov2-tiny-voc": (1, 125, 13, 13), "yolov2-tiny": (1, 425, 13, 13),
           "yolov2-voc": (1, 125, 13, 13), "yolov2": (1, 425, 19, 19)}[name]
    assert g.outputs[0].type.shape == out
    assert g.region["num"] == 5 and len(g.region["anchors"]) == 10 and g.region["coords"] == 4
    assert g.region["classes"] == (20 if "voc" in name else 80)
    assert parse_darknet(cfg).inputs[0].type.shape[0] == "N"


def test_tiny_voc_small_input_matches_darknet(tmp_path):
    cfg = os.path.join(CFG, "yolov2-tiny-voc.cfg")
    weights = tmp_path / "w.weights"
    params = write_weights(cfg, weights, seed=2)
    g = parse_darknet(cfg, weights, batch=1, width=64, height=64)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    (y,) = reference.run(g, {"data": x}).values()
    assert y.shape == (1, 125, 2, 2)
    np.testing.assert_allclose(y, darknet_forward(cfg, params, x), rtol=1e-3, atol=1e-4)
    planned, _ = nbtrt.plan(g)
    assert not [n for n in planned.nodes if n.op == "BatchNormalization"]
    (z,) = reference.run(planned, {"data": x}).values()
    np.testing.assert_allclose(z, y, rtol=1e-3, atol=1e-4)


def test_yolov2_voc_shape_plan_and_small_run(written):
    cfg = os.path.join(CFG, "yolov2-voc.cfg")
    weights, params = written("yolov2-voc")
    g = parse_darknet(cfg, weights, batch=1)
    assert g.outputs[0].type.shape == (1, 125, 13, 13)
    n_bn = sum(n.op == "BatchNormalization" for n in g.nodes)
    assert n_bn == sum("scales" in p for p in params) == 22
    planned, report = nbtrt.plan(g)
    assert not [n for n in planned.nodes if n.op in ("BatchNormalization", "Mul", "Add")]
    assert len(report.applied("fold_batchnorm")) == n_bn
    assert planned.outputs[0].type.shape == (1, 125, 13, 13)
    small = parse_darknet(cfg, weights, batch=1, width=64, height=64)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    (y,) = reference.run(small, {"data": x}).values()
    assert y.shape == (1, 125, 2, 2)
    np.testing.assert_allclose(y, darknet_forward(cfg, params, x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("major,minor", [(0, 1), (0, 2), (1, 0)])
def test_header_seen_int32_or_int64(toy, tmp_path, major, minor):
    cfg, weights, params = toy
    path = tmp_path / f"{major}{minor}.weights"
    path.write_bytes(to_bytes(params, major=major, minor=minor, seen=12345))
    ref = parse_darknet(cfg, weights, batch=1)
    g = parse_darknet(cfg, path, batch=1)
    assert path.stat().st_size == weights.stat().st_size - (4 if major * 10 + minor < 2 else 0)
    for name, v in g.constants.items():
        np.testing.assert_array_equal(v.const, ref.constants[name].const)


def test_truncated_and_overlong_weights(toy, tmp_path):
    cfg, weights, _ = toy
    data = weights.read_bytes()
    short = tmp_path / "short.weights"
    short.write_bytes(data[:-8])  # the last conv (layer 9) misses two floats
    with pytest.raises(ModelLoadError, match=r"short\.weights.*layer 9 .*weights needs 240 floats, 238 left"):
        parse_darknet(cfg, short)
    first = 20 + 4 * (8 * 4 + 8 * 3 * 9) + 4  # header, layer 0, one bias of layer 2
    short.write_bytes(data[:first])
    with pytest.raises(ModelLoadError, match=r"layer 2 \(\[convolutional\], section 3"):
        parse_darknet(cfg, short)
    short.write_bytes(data[:10])
    with pytest.raises(ModelLoadError, match="header"):
        parse_darknet(cfg, short)
    long = tmp_path / "long.weights"
    long.write_bytes(data + b"\0" * 12)
    with pytest.raises(ModelLoadError, match=r"long\.weights: 12 bytes left over .*layer 9"):
        parse_darknet(cfg, long)
    with pytest.raises(ModelLoadError, match="cannot read"):
        parse_darknet(cfg, tmp_path / "missing.weights")


@pytest.mark.parametrize("edit,error,pattern", [
    (("[reorg]", "[shortcut]"), UnsupportedOpError, r"section 5 \[shortcut\], layer 4.*darknet layer \[shortcut\]"),
    (("filters=4\n", ""), AttributeValueError, r"section 3 \[convolutional\], layer 2: missing required key 'filters'"),
    (("size=3\nstride=2\n", "size=x\nstride=2\n"), AttributeValueError, r"section 6 \[maxpool\].*size='x'"),
    (("activation=relu", "activation=mish"), AttributeValueError, r"section 10 .*activation 'mish'"),
    (("layers = 4", "layers=12"), AttributeValueError, r"section 8 \[route\], layer 7.*names no earlier layer"),
    (("stride=2\n\n[maxpool]\nsize=3", "stride=5\n\n[maxpool]\nsize=3"), AttributeValueError,
     r"section 5 \[reorg\].*stride 5 does not divide"),
    (("width=12\n", ""), AttributeValueError, r"section 0 \[net\]: missing required key 'width'"),
    (("[net]", "[nett]"), ModelLoadError, r"starts with a \[net\]"),
    (("batch=1\n", "batch 1\n"), ModelLoadError, r"toy\.cfg:2: expected"),
])
def test_bad_cfg_names_the_section(tmp_path, edit, error, pattern):
    text = TOY.replace(*edit, 1)
    assert text != TOY
    cfg = tmp_path / "toy.cfg"
    cfg.write_text(text)
    with pytest.raises(error, match=pattern) as info:
        parse_darknet(cfg)
    assert isinstance(info.value, NbtrtError) and "toy.cfg" in str(info.value)


def test_region_must_be_last_and_match_channels(tmp_path):
    cfg = tmp_path / "r.cfg"
    base = "[net]\nwidth=4\nheight=4\nchannels=3\n\n[convolutional]\nfilters=%d\nsize=1\nactivation=linear\n\n" \
           "[region]\nanchors=1,1,2,2\nclasses=2\nnum=2\ncoords=4\n"
    cfg.write_text(base % 14)
    g = parse_darknet(cfg)
    assert g.region["anchors"] == [1.0, 1.0, 2.0, 2.0] and g.outputs[0].type.shape == ("N", 14, 4, 4)
    cfg.write_text(base % 13)
    with pytest.raises(AttributeValueError, match=r"section 2 \[region\].*13 channels"):
        parse_darknet(cfg)
    cfg.write_text(base % 14 + "\n[maxpool]\nsize=2\n")
    with pytest.raises(UnsupportedOpError, match="after"):
        parse_darknet(cfg)

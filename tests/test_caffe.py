"""Caffe frontend: prototxt + .caffemodel -> IR; checked against a numpy transcription of Caffe's forward."""

import os

import numpy as np
import onnx
import pytest
from caffe_weights import blob_shapes, write_caffemodel
from conftest import SHARED

import nbtrt
from nbtrt import reference
from nbtrt.errors import GraphError, ModelLoadError, NbtrtError, UnsupportedOpError
from nbtrt.frontends.caffe import messages, parse_caffe
from nbtrt.frontends.caffe_proto import parse_proto

CAFFE = os.path.join(SHARED, "caffe")
GOOGLENET = os.path.join(CAFFE, "bvlc_googlenet_deploy.prototxt")
CAFFENET = os.path.join(CAFFE, "bvlc_reference_caffenet_deploy.prototxt")
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")

TOY = """
name: "toy"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 11 dim: 11 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
        convolution_param { num_output: 8 kernel_size: 1 } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv2" top: "conv2" batch_norm_param { eps: 0.001 } }
layer { name: "scale2" type: "Scale" bottom: "conv2" top: "conv2" scale_param { bias_term: true } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" relu_param { negative_slope: 0.1 } }
layer { name: "conv3" type: "Convolution" bottom: "norm1" top: "conv3"
        convolution_param { num_output: 8 kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 bias_term: false } }
layer { name: "relu3" type: "ReLU" bottom: "conv3" top: "conv3" }
layer { name: "sum" type: "Eltwise" bottom: "conv2" bottom: "conv3" top: "sum"
        eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }
layer { name: "emax" type: "Eltwise" bottom: "sum" bottom: "conv3" top: "emax" eltwise_param { operation: MAX } }
layer { name: "eprod" type: "Eltwise" bottom: "emax" bottom: "conv2" top: "eprod" eltwise_param { operation: PROD } }
layer { name: "cat" type: "Concat" bottom: "eprod" bottom: "sum" top: "cat" }
layer { name: "pool2" type: "Pooling" bottom: "cat" top: "pool2"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool3" type: "Pooling" bottom: "pool2" top: "pool3"
        pooling_param { pool: AVE kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "pool4" type: "Pooling" bottom: "pool3" top: "pool4"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool4" top: "fc" inner_product_param { num_output: 10 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" dropout_param { dropout_ratio: 0.5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


# ---- numpy transcription of Caffe's CPU forward (src/caffe/layers/*.cpp) ----

def caffe_conv(x, w, b, pad, stride=(1, 1)):
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh, ow = (h + 2 * pad[0] - kh) // stride[0] + 1, (wd + 2 * pad[1] - kw) // stride[1] + 1
    y = np.zeros((n, o, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + oh * stride[0]:stride[0], j:j + ow * stride[1]:stride[1]]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return y + (0 if b is None else b[None, :, None, None])


def caffe_pool(x, k, s, p, ave):
    """PoolingLayer::Forward_cpu, loop for loop."""
    n, c, h, w = x.shape
    ph = int(np.ceil((h + 2 * p[0] - k[0]) / s[0])) + 1
    pw = int(np.ceil((w + 2 * p[1] - k[1]) / s[1])) + 1
    if p[0] and (ph - 1) * s[0] >= h + p[0]:
        ph -= 1
    if p[1] and (pw - 1) * s[1] >= w + p[1]:
        pw -= 1
    y = np.zeros((n, c, ph, pw))
    for i in range(ph):
        for j in range(pw):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            if ave:
                he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
            else:
                he, we = min(hs + k[0], h), min(ws + k[1], w)
                hs, ws = max(hs, 0), max(ws, 0)
                y[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
    return y


def caffe_lrn(x, size, alpha, beta, k):
    sq = np.pad(x * x, ((0, 0), ((size - 1) // 2, size - 1 - (size - 1) // 2), (0, 0), (0, 0)))
    scale = k + alpha / size * sum(sq[:, i:i + x.shape[1]] for i in range(size))
    return x * scale ** -beta


def toy_forward(x, wt):
    ch = lambda v: v[None, :, None, None]
    y = np.maximum(caffe_conv(x, *wt["conv1"], (1, 1)), 0)
    y = caffe_lrn(caffe_pool(y, (2, 2), (2, 2), (0, 0), False), 3, 0.5, 0.75, 2.0)
    a = caffe_conv(y, *wt["conv2"], (0, 0))
    mean, var, f = wt["bn2"]
    f = f[0] or 1.0
    a = (a - ch(mean / f)) / np.sqrt(ch(var / f) + 0.001)
    a = a * ch(wt["scale2"][0]) + ch(wt["scale2"][1])
    a = np.where(a > 0, a, 0.1 * a)
    b = np.maximum(caffe_conv(y, wt["conv3"][0], None, (1, 0)), 0)
    s = a - 0.5 * b
    cat = np.concatenate([np.maximum(s, b) * a, s], axis=1)
    y = caffe_pool(cat, (3, 3), (2, 2), (1, 1), True)
    y = caffe_pool(y, (3, 3), (1, 1), (1, 1), True)
    y = caffe_pool(y, (3, 3), (2, 2), (0, 0), True)
    w, bias = wt["fc"]
    z = y.reshape(1, -1) @ w.T + bias
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy.prototxt"
    path.write_text(TOY)
    return path


def test_proto_parser_reads_caffe_proto():
    m = messages()
    assert m["BatchNormParameter"]().eps == pytest.approx(1e-5)
    assert m["PoolingParameter"]().pool == m["PoolingParameter"].MAX
    assert m["FillerParameter"]().type == "constant"
    assert {"NetParameter", "LayerParameter", "V1LayerParameter", "BlobProto"} <= set(m)
    blob = m["BlobProto"]()
    blob.data.extend([1.0, 2.0])
    assert blob.SerializeToString()[:2] == b"\x2a\x08"      # field 5, packed


def test_proto_parser_scoping_and_errors():
    fdp = parse_proto('syntax = "proto2"; package p; /* c */ message A { enum E { X = 0; } '
                      'message B { optional E e = 1 [default = X]; optional A a = 2; } '
                      'repeated B b = 3; optional bytes d = 4 [default = "a\\n"]; }')
    b = fdp.message_type[0].nested_type[0]
    assert (b.field[0].type_name, b.field[0].default_value, b.field[1].type_name) == (".p.A.E", "X", ".p.A")
    with pytest.raises(ModelLoadError, match="unknown type"):
        parse_proto("message A { optional Missing m = 1; }")


def test_missing_proto_is_a_clear_error(toy, monkeypatch, tmp_path):
    with pytest.raises(ModelLoadError, match="caffe.proto not found"):
        parse_caffe(toy, proto_path=tmp_path / "nope.proto")
    monkeypatch.setenv("NBTRT_CAFFE_PROTO", str(tmp_path / "nope.proto"))
    with pytest.raises(ModelLoadError, match="NBTRT_CAFFE_PROTO"):
        parse_caffe(toy)


@pytest.mark.parametrize("legacy", [False, True])
def test_toy_matches_caffe_forward(toy, tmp_path, legacy):
    model = tmp_path / "toy.caffemodel"
    wt = write_caffemodel(toy, model, seed=3, legacy=legacy)
    g = parse_caffe(toy, model)
    assert [v.name for v in g.outputs] == ["prob"] and g.outputs[0].type.shape == (1, 10)
    assert {n.op for n in g.nodes} >= {"Pad", "AveragePool", "MaxPool", "LRN", "BatchNormalization", "Max"}
    assert "Dropout" not in {n.op for n in g.nodes}
    x = np.random.default_rng(0).normal(size=(1, 3, 11, 11)).astype(np.float32)
    got = reference.run(g, {"data": x})["prob"]
    want = toy_forward(x.astype(np.float64), {k: [a.astype(np.float64) for a in v] for k, v in wt.items()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


GEOMETRIES = [(h, k, s, p) for h in (4, 5, 6, 7, 11) for k in (1, 2, 3) for s in (1, 2, 3) for p in range(k)
              if h + 2 * p >= k]


@pytest.mark.parametrize("ave", [False, True])
def test_pooling_geometries_match_caffe(tmp_path, ave):
    rng = np.random.default_rng(1)
    for h, k, s, p in GEOMETRIES:
        w = h + 1
        text = (f'layer {{ name: "d" type: "Input" top: "d" input_param {{ shape {{ dim: 1 dim: 2 dim: {h} '
                f'dim: {w} }} }} }}\nlayer {{ name: "p" type: "Pooling" bottom: "d" top: "p" pooling_param '
                f'{{ pool: {"AVE" if ave else "MAX"} kernel_size: {k} stride: {s} pad: {p} }} }}\n')
        path = tmp_path / "pool.prototxt"
        path.write_text(text)
        x = rng.normal(size=(1, 2, h, w)).astype(np.float32)
        try:
            g = parse_caffe(path)
        except NbtrtError as e:     # Caffe's last window outside the input (k < s): refused, said so
            assert "outside the input" in str(e) and k < s, (h, k, s, p)
            continue
        got = reference.run(g, {"d": x})["p"]
        np.testing.assert_allclose(got, caffe_pool(x, (k, k), (s, s), (p, p), ave), rtol=1e-5, atol=1e-6,
                                   err_msg=str((h, k, s, p)))


def test_googlenet_parses_runs_and_plans(tmp_path):
    model = tmp_path / "googlenet.caffemodel"
    write_caffemodel(GOOGLENET, model, seed=0)
    g = parse_caffe(GOOGLENET, model, batch=1)
    assert g.inputs[0].type.shape == (1, 3, 224, 224)
    assert [(v.name, v.type.shape) for v in g.outputs] == [("prob", (1, 1000))]
    x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    prob = reference.run(g, {"data": x})["prob"]
    assert prob.shape == (1, 1000) and np.all(np.isfinite(prob)) and abs(prob.sum() - 1) < 1e-4
    assert prob.max() > 10 / 1000       # random weights still give a non-uniform output
    _, report = nbtrt.plan(g)
    merges = [d for d in report.decisions if d.rule == "merge_parallel_convs" and d.applied]
    assert len(merges) == 9
    ops = {k["op"] for k in report.kernels}
    assert not ops & {"Concat", "Relu", "Dropout", "Identity"}
    _, onnx_report = nbtrt.plan(os.path.join(LIGHT, "light_inception_v1.onnx"))
    assert len(report.kernels) == len(onnx_report.kernels)


def test_caffenet_parses():
    g = parse_caffe(CAFFENET, batch=1)
    assert [v.type.shape for v in g.outputs] == [(1, 1000)]
    assert parse_caffe(CAFFENET).outputs[0].type.shape == (10, 1000)
    assert {n.op for n in g.nodes} >= {"Conv", "Relu", "MaxPool", "LRN", "Gemm", "Softmax"}


def test_input_shape_override_and_legacy_inputs(tmp_path):
    g = parse_caffe(CAFFENET, batch=2, input_shape=(1, 3, 227, 227))
    assert g.inputs[0].type.shape == (2, 3, 227, 227)
    path = tmp_path / "legacy.prototxt"
    path.write_text('input: "data"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 5\ninput_dim: 5\n'
                    'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n')
    g = parse_caffe(path)
    assert g.inputs[0].type.shape == (1, 2, 5, 5) and g.outputs[0].name != "data"
    path.write_text('input: "data"\ninput_shape { dim: 1 dim: 4 }\n'
                    'layer { name: "s" type: "Softmax" bottom: "data" top: "prob" }\n')
    assert parse_caffe(path).outputs[0].type.shape == (1, 4)


def test_unknown_layers_are_all_listed(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text(TOY.replace('type: "LRN"', 'type: "Crop"').replace('"Dropout"', '"Python"'))
    with pytest.raises(UnsupportedOpError) as e:
        parse_caffe(path)
    assert [name for name, _ in e.value.unsupported] == ["norm1", "drop"]
    assert "Crop" in str(e.value) and "Python" in str(e.value)


def test_missing_and_mismatched_weights_name_the_layer(toy, tmp_path):
    model = tmp_path / "toy.caffemodel"
    write_caffemodel(toy, model)
    m = messages()
    net = m["NetParameter"]()
    net.ParseFromString(model.read_bytes())
    kept = [layer for layer in net.layer if layer.name != "conv3"]
    del net.layer[:]
    net.layer.extend(kept)
    model.write_bytes(net.SerializeToString())
    with pytest.raises(ModelLoadError, match="'conv3'.*no weights"):
        parse_caffe(toy, model)
    other = tmp_path / "other.prototxt"
    other.write_text(TOY.replace("num_output: 10", "num_output: 7"))
    write_caffemodel(other, model)
    with pytest.raises(ModelLoadError, match="'fc'.*blob 0"):
        parse_caffe(toy, model)


def test_bad_files(toy, tmp_path):
    with pytest.raises(ModelLoadError):
        parse_caffe(tmp_path / "missing.prototxt")
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { name: 3 ")
    with pytest.raises(ModelLoadError):
        parse_caffe(bad)
    bad.write_text('layer { name: "r" type: "ReLU" bottom: "nothing" top: "r" }')
    with pytest.raises(GraphError, match="'r'.*nothing"):
        parse_caffe(bad)
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\xff" * 10)
    with pytest.raises(ModelLoadError):
        parse_caffe(toy, junk)


def test_writer_shapes_match_the_graph():
    g = parse_caffe(GOOGLENET, batch=1)
    for layer, shapes in blob_shapes(GOOGLENET).items():
        assert g.constants[f"{layer}_W"].const.shape == shapes[0]

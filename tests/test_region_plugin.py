"""The Darknet region layer as a plugin, nbtrt.parse routing, the examples, and the GPU checks of plugins
(YOLOv2-VOC 416x416 on the GPU against the reference; a plugin inside the captured CUDA graph)."""

import importlib.util
import os

import numpy as np
import pytest
from conftest import SHARED
from darknet_region_ref import forward_region
from darknet_weights import write_weights

import nbtrt
from nbtrt import reference
from nbtrt.errors import AttributeValueError, ModelLoadError, PluginError
from nbtrt.frontends.darknet import parse_darknet
from nbtrt.frontends.darknet_region import RegionPlugin
from nbtrt.plugins import find_plugin

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
TINY = """[net]
width=8
height=8
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=16
size=1
stride=1
pad=1
activation=linear

[region]
anchors=1.0,1.5, 2.0,1.0
classes=3
num=2
coords=4
softmax=1
"""


def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def region_net(plugin, shape):
    net = nbtrt.Network("region")
    x = net.add_input("x", "float32", shape)
    net.mark_output(net.add_plugin(plugin, [x], name="region"), "y")
    return net.graph()


@pytest.fixture
def tiny(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY)
    write_weights(cfg, tmp_path / "tiny.weights", seed=4)
    return cfg


@pytest.mark.parametrize("softmax,background,coords,classes", [(1, 0, 4, 3), (0, 0, 4, 3), (1, 1, 4, 2),
                                                               (0, 1, 6, 2), (1, 0, 5, 1)])
def test_region_reference_matches_darknet(softmax, background, coords, classes):
    num = 2
    plugin = RegionPlugin(anchors=[1, 1, 2, 2], num=num, classes=classes, coords=coords, softmax=softmax,
                          background=background)
    x = 3 * np.random.default_rng(0).standard_normal((2, num * (coords + 1 + classes), 3, 2)).astype(np.float32)
    want = forward_region(x, num, classes, coords, softmax, background)
    np.testing.assert_allclose(plugin.reference([x])[0], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("softmax,background", [(1, 0), (0, 1)])
def test_region_kernel_in_the_simulator(softmax, background):
    plugin = RegionPlugin(anchors=[1, 1, 2, 2], num=2, classes=3, coords=4, softmax=softmax, background=background)
    x = 3 * np.random.default_rng(1).standard_normal((1, 16, 3, 2)).astype(np.float32)
    got = nbtrt.compile(region_net(plugin, x.shape)).run({"x": x})["y"]
    np.testing.assert_allclose(got, forward_region(x, 2, 3, 4, softmax, background), rtol=1e-5, atol=1e-6)


def test_region_checks_its_input():
    with pytest.raises(PluginError, match=r"node 'region' .*input has 15 channels, num·\(coords \+ 1 \+ classes\) = 16"):
        region_net(RegionPlugin(anchors=[1, 1, 2, 2], num=2, classes=3), (1, 15, 2, 2))
    with pytest.raises(PluginError, match="takes float32"):
        net = nbtrt.Network()
        net.add_plugin(RegionPlugin(anchors=[1, 1], classes=3), [net.add_input("x", "float64", (1, 8, 2, 2))])
    with pytest.raises(ValueError, match="anchor values"):
        RegionPlugin(anchors=[1, 1, 2], num=2)
    plugin = RegionPlugin(anchors=[1, 2, 3, 4], num=2, classes=3, softmax=1)
    again = RegionPlugin.deserialize(plugin.serialize())
    assert again.params() == plugin.params() and find_plugin("Region", "nbtrt.darknet", 1) is RegionPlugin


def test_darknet_region_is_a_plugin_node(tiny, tmp_path):
    g = parse_darknet(tiny, tmp_path / "tiny.weights", batch=2)
    region = g.nodes[-1]
    assert region.op == "Plugin" and region.domain == "nbtrt.darknet" and region.name == "region3"
    assert g.outputs == region.outputs and g.outputs[0].type.shape == (2, 16, 4, 4)
    assert region.attrs["plugin"].params() == {"anchors": [1.0, 1.5, 2.0, 1.0], "num": 2, "classes": 3, "coords": 4,
                                               "softmax": 1, "background": 0}
    assert g.region["node"] == "region3" and g.region["thresh"] == 0.5
    tree = tmp_path / "tree.cfg"
    tree.write_text(TINY + "tree=data/9k.tree\n")
    with pytest.raises(AttributeValueError, match=r"\[region\].*softmax tree"):
        parse_darknet(tree)


def test_tiny_yolo_end_to_end_in_the_simulator(tiny, tmp_path):
    g = nbtrt.parse(tiny)  # tiny.weights beside it
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 8, 8)).astype(np.float32)
    want = reference.run(g, {"data": x})["region3"]
    engine = nbtrt.compile(g, dims={"N": 1})
    assert [k["kind"] for k in engine.report.kernels][-1] == "plugin"
    got = engine.run({"data": x})["region3"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    path = tmp_path / "tiny.engine"
    engine.save(path)
    np.testing.assert_array_equal(nbtrt.load(path).run({"data": x})["region3"], got)


def test_parse_routes_by_suffix(tiny, tmp_path):
    assert nbtrt.parse(tiny).nodes[-1].op == "Plugin"
    other = tmp_path / "other.weights"
    os.rename(tmp_path / "tiny.weights", other)
    with pytest.raises(ModelLoadError, match=r"tiny\.cfg: no weights given and no tiny\.weights beside it"):
        nbtrt.parse(tiny)
    assert nbtrt.parse(str(tiny), weights=other).outputs[0].type.shape == ("N", 16, 4, 4)
    proto = tmp_path / "net.prototxt"
    proto.write_text('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 4 '
                     'dim: 4 } } }\nlayer { name: "relu" type: "ReLU" bottom: "data" top: "out" }\n')
    with pytest.raises(ModelLoadError, match=r"no weights given and no net\.caffemodel"):
        nbtrt.parse(proto)
    (tmp_path / "net.caffemodel").write_bytes(b"")
    assert [n.op for n in nbtrt.parse(proto).nodes] == ["Relu"]
    with pytest.raises(ModelLoadError, match="weights= is for Darknet"):
        nbtrt.parse(os.path.join(SHARED, "models", "digits_cnn.onnx"), weights=other)


# -- the examples ------------------------------------------------------------------------------------
def test_yolov2_example_decodes_and_suppresses():
    yolo = example("yolov2")
    region = {"num": 2, "coords": 4, "classes": 3, "anchors": [3.0, 1.0, 3.0, 1.0]}
    out = np.zeros((2, 8, 2, 3), np.float32)  # [anchor, entry, h, w]
    out[:, 4] = 0.1
    out[:, 5:] = 1 / 3
    out[1, :, 1, 2] = [0.5, 0.25, 0.0, np.log(2), 0.9, 0.1, 0.8, 0.1]   # anchor 1 at row 1, column 2
    out[0, :, 1, 2] = [0.5, 0.25, 0.0, np.log(2), 0.8, 0.1, 0.8, 0.1]   # the same box, less sure
    out[0, :, 0, 0] = [0.5, 0.5, 0.0, 0.0, 0.9, 0.0, 0.0, 1.0]          # class 2 elsewhere
    found = yolo.region_boxes(out.reshape(16, 2, 3), region, thresh=0.3)
    assert sorted((c, round(p, 3)) for c, p, _ in found) == [(1, 0.64), (1, 0.72), (2, 0.9)]
    kept = yolo.nms(found, 0.45)
    assert [(c, round(p, 3)) for c, p, _ in kept] == [(2, 0.9), (1, 0.72)]
    np.testing.assert_allclose(kept[1][2], [2.5 / 3, 1.25 / 2, 3 / 3, 2 / 2])
    assert yolo.iou(np.array([0.5, 0.5, 1, 1]), np.array([1.0, 0.5, 1, 1])) == pytest.approx(1 / 3)


def test_yolov2_example_runs_a_small_cfg(tiny, capsys):
    assert example("yolov2").main(["--cfg", str(tiny), "--check", "--thresh", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "engine vs reference: max relative error" in out and "detections above 0.01" in out


def test_custom_op_example(capsys):
    assert example("custom_op").main(["--batch", "1", "--size", "6"]) == 0
    assert "reloaded engine equal: True" in capsys.readouterr().out


def test_cli_loads_plugins(tmp_path, capsys):
    from onnx import save
    from nbtrt.cli import main
    from nbtrt.plugins import unregister_plugin
    path = tmp_path / "custom.onnx"
    save(example("custom_op").make_model(size=4), str(path))
    unregister_plugin("SquarePlus", "example.ops", 1)
    assert main(["run", str(path)]) == 2
    assert "'squareplus': example.ops::SquarePlus version 1: no plugin registered" in capsys.readouterr().err
    assert main(["--plugins", os.path.join(EXAMPLES, "custom_op.py"), "run", str(path), "--dim", "N=2"]) == 0
    assert "features: float32[2, 8, 1, 1]" in capsys.readouterr().out
    assert main(["--plugins", "no_such_module_here", "graph", str(path)]) == 2
    assert "cannot load plugins from 'no_such_module_here'" in capsys.readouterr().err
    unregister_plugin("SquarePlus", "example.ops", 1)


# -- on a GPU ----------------------------------------------------------------------------------------
def rel_error(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.gpu
def test_yolov2_voc_416_on_the_gpu(tmp_path):
    cfg = os.path.join(SHARED, "darknet", "yolov2-voc.cfg")
    write_weights(cfg, tmp_path / "w.weights", seed=1)
    graph = parse_darknet(cfg, tmp_path / "w.weights", batch=1)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 416, 416)).astype(np.float32)
    want = reference.run(graph, {"data": x})["region31"]
    engine = nbtrt.compile(graph)
    assert rel_error(engine.run({"data": x})["region31"], want) <= 1e-3
    path = tmp_path / "yolo.engine"
    engine.save(path)
    assert rel_error(nbtrt.load(path).run({"data": x})["region31"], want) <= 1e-3


@pytest.mark.gpu
def test_plugin_runs_inside_the_captured_graph():
    from onnx import helper
    from test_plugins import DOMAIN, Affine, model
    from nbtrt.plugins import register_plugin, unregister_plugin
    register_plugin(Affine, replace=True)
    try:
        shape = (2, 3, 8, 8)  # the plugin reads the graph input itself
        m = model([helper.make_node("Affine", ["x"], ["p"], domain=DOMAIN, a=3.0, b=-1.0),
                   helper.make_node("Relu", ["p"], ["y"])], [("x", shape)], [("y", shape)])
        ctx = nbtrt.compile(m).create_context()
        x1, x2 = (np.random.default_rng(s).standard_normal((2, 3, 8, 8)).astype(np.float32) for s in (1, 2))
        assert rel_error(ctx.run({"x": x1})["y"], reference.run(m, {"x": x1})["y"]) <= 1e-5
        enqueued = sum(c[0] == "enqueue" for c in Affine.CALLS)
        assert enqueued == 2  # once before the capture (Numba compiles), once captured
        assert rel_error(ctx.run({"x": x2})["y"], reference.run(m, {"x": x2})["y"]) <= 1e-5
        assert sum(c[0] == "enqueue" for c in Affine.CALLS) == enqueued and ctx.captures == 1  # replayed
        from numba import cuda
        for x in (x1, x2):  # GPU inputs at new addresses: the plugin reads them in place after a new capture
            got = ctx.run({"x": cuda.to_device(x)})["y"]
            assert rel_error(got, reference.run(m, {"x": x})["y"]) <= 1e-5
    finally:
        unregister_plugin("Affine", "test.plugins", 1)

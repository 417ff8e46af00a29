"""INT8 calibration (issue 7): statistics, calibrators, cache, errors, fake quantization on digits_cnn."""

import os

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import nbtrt
from conftest import SHARED
from nbtrt import quant
from nbtrt.errors import (CalibrationCacheError, CalibrationCacheMismatch, CalibrationDataError, CalibrationError,
                          InputError, NbtrtError)
from nbtrt.quant import AbsHistogram, histogram
from nbtrt.quant.calibrators import entropy_threshold, kl_divergences, percentile_threshold

MODELS = os.path.join(SHARED, "models")
DIGITS_CNN = os.path.join(MODELS, "digits_cnn.onnx")
needs_digits = pytest.mark.skipif(not os.path.exists(DIGITS_CNN), reason="needs ../shared/models")


@pytest.fixture(scope="module")
def digits():
    data = np.load(os.path.join(MODELS, "digits.npz"))
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def digits_graph():
    return nbtrt.parse(DIGITS_CNN)


def tiny_model(scale=2.0, names=("x", "h", "y")):
    """x[N,4] -> Relu -> h -> Mul(h, Add(c1, c2)) -> y: c1 + c2 is computed from constants only."""
    x, h, y = names
    nodes = [helper.make_node("Relu", [x], [h]),
             helper.make_node("Add", ["c1", "c2"], ["w"]),
             helper.make_node("Mul", [h, "w"], [y])]
    inits = [helper.make_tensor("c1", TensorProto.FLOAT, [4], [scale] * 4),
             helper.make_tensor("c2", TensorProto.FLOAT, [4], [1.0] * 4)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", 4])], inits)
    return nbtrt.parse(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def hist_of(*arrays):
    h = AbsHistogram()
    for a in arrays:
        h.add(a)
    return h


# -- histograms ----------------------------------------------------------------------------------------

def test_histogram_bins_are_floor_of_power_of_two_scaling():
    x = np.random.default_rng(0).normal(0, 3, 10_000).astype(np.float32)
    h = hist_of(x)
    e = int(np.frexp(np.abs(x).max())[1])
    assert h.top == 2.0 ** e and h.top / 2 <= h.absmax < h.top
    want = np.bincount(np.floor(np.abs(x).astype(np.float64) * 2.0 ** (11 - e)).astype(int), minlength=2048)
    assert np.array_equal(h.counts, want) and h.count == x.size and h.absmax == np.abs(x).max()


def test_histogram_zeros_nonfinite_and_half_precision():
    h = hist_of(np.array([0, 0, np.inf, np.nan, -0.75], np.float16), np.zeros(3, np.float32))
    assert (h.count, h.zeros, h.nonfinite, h.absmax, h.top) == (6, 5, 2, 0.75, 1.0)
    assert h.counts[0] == 5 and h.counts[1536] == 1
    only_zeros = hist_of(np.zeros(4, np.float32))
    assert only_zeros.exponent is None and only_zeros.counts[0] == 4 and only_zeros.absmax == 0


def test_large_tensors_are_binned_in_chunks(monkeypatch):
    x = np.random.default_rng(5).normal(size=(10, 1000)).astype(np.float32)
    whole = hist_of(x)
    monkeypatch.setattr(histogram, "CHUNK", 999)
    assert hist_of(x) == whole


finite = st.floats(-1e4, 1e4, width=32, allow_subnormal=False)
chunks = st.lists(st.lists(finite, max_size=40), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(chunks, st.randoms(use_true_random=False))
def test_histogram_does_not_depend_on_batch_order_or_split(batches, rnd):
    arrays = [np.array(b, np.float32) for b in batches]
    one_pass = hist_of(np.concatenate(arrays))
    shuffled = list(arrays)
    rnd.shuffle(shuffled)
    assert hist_of(*arrays) == one_pass == hist_of(*shuffled)
    parts = [hist_of(a) for a in arrays]  # merged as a tree in another order
    tree = parts[-1].copy()
    for p in reversed(parts[:-1]):
        tree = p.copy().merge(tree)
    assert tree == one_pass


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, max_size=30), st.lists(finite, max_size=30), st.lists(finite, max_size=30))
def test_histogram_merge_is_commutative_and_associative(a, b, c):
    ha, hb, hc = (hist_of(np.array(v, np.float32)) for v in (a, b, c))
    assert ha.copy().merge(hb) == hb.copy().merge(ha)
    assert ha.copy().merge(hb).merge(hc) == ha.copy().merge(hb.copy().merge(hc))
    assert ha.copy().merge(hb).counts.sum() == len(a) + len(b)


def test_range_growth_by_many_octaves_keeps_counts():
    h = hist_of(np.full(5, 1e-3, np.float32), np.array([3e4], np.float32))
    assert h.counts.sum() == 6 and h.counts[0] == 5 and h.top == 2.0 ** 15


# -- calibrators ---------------------------------------------------------------------------------------

def test_minmax_is_abs_max_exactly():
    x = np.random.default_rng(1).standard_cauchy(5000).astype(np.float32)
    table = quant.make_table({"t": hist_of(x)}, "minmax")
    assert table["t"] == float(np.abs(x).max()) / 127 and table.threshold("t") == pytest.approx(np.abs(x).max())


def test_percentile_on_known_data():
    x = ((np.arange(10_000) + 0.5) / 10_000 * 8).astype(np.float32)  # top 8, bin width 1/256
    h = hist_of(-x)
    # the 9900th smallest value, 7.9196, lies in bin floor(7.9196 * 256) = 2027, whose upper edge is 2028/256
    assert percentile_threshold(h, 99.0) == 2028 / 256
    exact = np.percentile(x, 99.0, method="inverted_cdf")
    assert exact <= percentile_threshold(h, 99.0) < exact + h.bin_width
    assert percentile_threshold(h, 100) == h.absmax
    table = quant.make_table({"t": h}, "percentile", percentile=50)  # the 5000th value, 3.9996: bin 1023
    assert table.threshold("t") == pytest.approx(1024 / 256) and table.calibrator == "percentile(50.0)"


def test_entropy_keeps_the_whole_range_of_a_uniform_distribution():
    x = ((np.arange(20_480) + 0.5) / 10_240).astype(np.float32)  # every bin of [0, 2) holds 10 values
    h = hist_of(x)
    assert np.all(h.counts == 10)
    assert entropy_threshold(h) == h.absmax


def test_entropy_on_gaussian_with_outliers_lands_well_inside_the_max():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, 200_000), [60.0, -55.0, 48.0]]).astype(np.float32)
    t = entropy_threshold(hist_of(x))
    assert 3.0 < t < 6.0 and t < 0.1 * np.abs(x).max()
    assert quant.make_table({"t": hist_of(x)}, "minmax").threshold("t") == pytest.approx(60.0)


def test_entropy_ignores_exact_zeros():
    rng = np.random.default_rng(3)
    relu = np.maximum(rng.normal(0, 1, 100_000), 0).astype(np.float32)
    more_zeros = np.concatenate([relu, np.zeros(300_000, np.float32)])
    assert entropy_threshold(hist_of(relu)) == entropy_threshold(hist_of(more_zeros)) < relu.max()


def slow_kl(counts, i, levels=128):
    """Migacz's pseudocode, one candidate at a time (level j: bins floor(j*i/128) .. floor((j+1)*i/128))."""
    c = np.asarray(counts, np.float64)
    p = c[:i].copy()
    p[i - 1] += c[i:].sum()
    q = np.zeros(i)
    edges = [j * i // levels for j in range(levels + 1)]
    for a, b in zip(edges[:-1], edges[1:]):
        nonzero = p[a:b] > 0
        if nonzero.any():
            q[a:b][nonzero] = c[a:b].sum() / nonzero.sum()
    p, q = p / p.sum(), q / q.sum() if q.sum() else q
    if np.any((p > 0) & (q == 0)):
        return np.inf
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


@settings(max_examples=15, deadline=None)
@given(st.integers(129, 400), st.integers(0, 2**32 - 1), st.floats(0.0, 0.9))
def test_vectorized_kl_matches_the_pseudocode(n, seed, sparsity):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 50, n) * (rng.random(n) > sparsity)
    counts[-1] = max(counts[-1], 1)
    candidates, kl = kl_divergences(counts)
    for i in rng.choice(candidates, size=6):
        want = slow_kl(counts, int(i))
        got = kl[int(i) - 128]
        assert (np.isinf(want) and np.isinf(got)) or got == pytest.approx(want, rel=1e-7, abs=1e-10)


def test_quantize_rounds_half_to_even_and_saturates():
    q = quant.quantize(np.array([0.5, 1.5, 2.5, -0.5, 126.6, 300, -300], np.float32), 1.0)
    assert q.dtype == np.int8 and q.tolist() == [0, 2, 2, 0, 127, 127, -127]
    assert quant.fake_quantize(np.array([0.26], np.float32), 0.5).tolist() == [0.5]


# -- collection ----------------------------------------------------------------------------------------

def test_activations_exclude_constants_and_constant_subgraphs():
    graph = tiny_model()
    names = quant.activations(graph)
    assert names == ["x", "h", "y"]


def test_custom_runner_and_progress_line(capsys):
    graph = tiny_model()
    batches = [np.random.default_rng(i).normal(size=(3, 4)).astype(np.float32) for i in range(3)]
    seen = []

    def runner(inputs):  # e.g. an engine's context returning every tensor it computed
        seen.append(inputs["x"].shape)
        return nbtrt.reference.run(graph, inputs, outputs=["x", "y"])
    stats = quant.collect(graph, batches, runner)
    assert list(stats) == ["x", "y"] and seen == [(3, 4)] * 3
    reference = quant.collect(graph, batches, progress=False)
    assert stats["y"] == reference["y"] and list(reference) == ["x", "h", "y"]
    err = capsys.readouterr().err
    assert "calibration: batch 3/3, 9 samples" in err and err.endswith("done\n")


def test_calibration_data_forms():
    graph = tiny_model()
    x = np.ones((2, 4), np.float32)
    one = quant.collect(graph, x, progress=False)  # one array of the input's rank: one batch
    assert one == quant.collect(graph, {"x": x}, progress=False) == quant.collect(graph, iter([x]), progress=False)
    assert one["y"].absmax == 3.0


# -- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch, words", [
    ({"image": np.zeros((2, 4), np.float32)}, ["unknown input(s) 'image'", "missing input(s) 'x'"]),
    (np.zeros((2, 5), np.float32), ["'x'", "[2, 5]", "[N, 4]", "dim 1 must be 4"]),
    (np.zeros((2, 4), np.float64), ["'x'", "float64", "expects float32"]),
    (np.zeros((4,), np.float32), ["'x'", "rank 2"]),
])
def test_wrong_calibration_batches_name_the_input(batch, words):
    good = np.zeros((2, 4), np.float32)
    with pytest.raises(CalibrationDataError) as e:
        quant.calibrate(tiny_model(), [good, batch], progress=False)
    assert isinstance(e.value, InputError) and "calibration batch 1" in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_empty_missing_and_unknown_calibrator(tmp_path):
    with pytest.raises(CalibrationError, match="empty"):
        quant.calibrate(tiny_model(), [], progress=False)
    with pytest.raises(CalibrationError, match="empty"):
        quant.calibrate(tiny_model(), (b for b in []), progress=False)
    with pytest.raises(CalibrationError, match="no calibration data and no calibration cache"):
        quant.calibrate(tiny_model(), None, cache=tmp_path / "none.calib")
    with pytest.raises(CalibrationError, match="unknown calibrator 'kl'.*'entropy', 'minmax', 'percentile'"):
        quant.calibrate(tiny_model(), [np.ones((1, 4), np.float32)], calibrator="kl")
    with pytest.raises(CalibrationError, match="percentile must be"):
        quant.calibrate(tiny_model(), [np.ones((1, 4), np.float32)], calibrator="percentile", percentile=0)
    with pytest.raises(CalibrationError, match="iterable"):
        quant.calibrate(tiny_model(), 3.5, progress=False)


def test_array_batches_need_a_one_input_model():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in "aby"]
    graph = nbtrt.parse(helper.make_model(helper.make_graph(nodes, "two", vi[:2], vi[2:]),
                                          opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(CalibrationDataError, match="2 inputs \\('a', 'b'\\).*must be a dict"):
        quant.calibrate(graph, [np.ones(2, np.float32)], progress=False)


# -- cache ---------------------------------------------------------------------------------------------

ODD_NAMES = ["plain", "onnx::Conv_64", "a: b", "ends with colon:", " padded ", "#hash", '"quoted"', "line\nbreak",
             "next\x85line", "", "ünïcode"]


def test_cache_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(4)
    scales = {name: float(s) for name, s in zip(ODD_NAMES, rng.lognormal(-3, 2, len(ODD_NAMES)))}
    table = quant.CalibrationTable(scales, "percentile(99.9)", "0123456789abcdef")
    path = tmp_path / "model.calib"
    quant.write_cache(path, table)
    back = quant.read_cache(path)
    assert back == table and list(back) == ODD_NAMES and back.version == nbtrt.__version__
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# nbtrt calibration cache v1\n") and f"plain: {scales['plain']!r}\n" in text
    hexed = path.read_text().replace(f"{scales['plain']!r}", scales["plain"].hex())
    path.write_text(hexed)
    assert quant.read_cache(path)["plain"] == scales["plain"]


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "model.calib"
    table = quant.CalibrationTable({"x": 0.5}, "entropy", "f" * 16)

    def boom(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        quant.write_cache(path, table)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    quant.write_cache(path, table)
    monkeypatch.setattr(os, "fsync", boom)  # an old cache survives an interrupted rewrite
    with pytest.raises(KeyboardInterrupt):
        quant.write_cache(path, quant.CalibrationTable({"x": 0.25}, "entropy", "f" * 16))
    assert quant.read_cache(path)["x"] == 0.5 and list(tmp_path.iterdir()) == [path]


def test_interrupted_calibration_writes_no_cache(tmp_path):
    def batches():
        yield np.ones((1, 4), np.float32)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        quant.calibrate(tiny_model(), batches(), cache=tmp_path / "c.calib", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cache_skips_calibration(tmp_path):
    path = tmp_path / "tiny.calib"
    data = [np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)]
    made = quant.calibrate(tiny_model(), data, "minmax", cache=path, progress=False)
    assert made.threshold("y") == pytest.approx(6.0)

    def never(inputs):
        raise AssertionError("calibrated again")
    assert quant.calibrate(tiny_model(), None, "minmax", cache=path, runner=never) == made
    assert quant.calibrate(tiny_model(), data, "minmax", cache=str(path), runner=never) == made


def test_cache_of_another_model_names_the_tensors(tmp_path):
    path = tmp_path / "tiny.calib"
    data = [np.ones((1, 4), np.float32)]
    quant.calibrate(tiny_model(), data, "minmax", cache=path, progress=False)
    with pytest.raises(CalibrationCacheMismatch) as e:
        quant.calibrate(tiny_model(names=("x", "relu_out", "y")), data, "minmax", cache=path)
    assert e.value.missing == ["relu_out"] and e.value.unknown == ["h"]
    assert "not in the cache: 'relu_out'" in str(e.value) and "not in the model: 'h'" in str(e.value)
    with pytest.raises(CalibrationCacheMismatch, match="names agree, but the structure, shapes or weights"):
        quant.calibrate(tiny_model(scale=3.0), data, "minmax", cache=path)
    with pytest.raises(CalibrationCacheMismatch, match="made with calibrator minmax, not entropy"):
        quant.calibrate(tiny_model(), data, "entropy", cache=path)


@pytest.mark.parametrize("text, words", [
    (b"\x89PNG\r\n\x1a\n\xff\xfe", "not UTF-8"),
    (b"", "an empty file"),
    (b"x: 0.5\n", "not an nbtrt calibration cache"),
    (b"# nbtrt calibration cache v1\n# model: abc\n# calibrator: entropy\nx 0.5\n", ":4: expected 'tensor_name: scale'"),
    (b"# nbtrt calibration cache v1\n# model: abc\n# calibrator: entropy\nx: half\n", "'x' is not a number"),
    (b"# nbtrt calibration cache v1\n# model: abc\n# calibrator: entropy\nx: -0.5\n", "positive and finite"),
    (b"# nbtrt calibration cache v1\n# model: abc\n# calibrator: entropy\nx: 1\nx: 2\n", "listed twice"),
    (b"# nbtrt calibration cache v1\n# calibrator: entropy\nx: 1\n", "no '# model: ...' line"),
    (b'# nbtrt calibration cache v1\n# model: a\n# calibrator: entropy\n"x: 1\n', "badly quoted"),
])
def test_corrupt_cache_files(tmp_path, text, words):
    path = tmp_path / "bad.calib"
    path.write_bytes(text)
    with pytest.raises(CalibrationCacheError, match="bad.calib") as e:
        quant.calibrate(tiny_model(), None, cache=path)
    assert words in str(e.value) and not isinstance(e.value, CalibrationCacheMismatch)
    assert isinstance(e.value, NbtrtError)


def test_unreadable_cache_path(tmp_path):
    with pytest.raises(CalibrationCacheError, match="cannot read"):
        quant.read_cache(tmp_path)


# -- end to end on the trained digits CNN ---------------------------------------------------------------

@needs_digits
def test_digits_cnn_every_activation_and_order_independence(digits, digits_graph, tmp_path):
    calib = digits["images"][digits["calib_idx"]]
    batches = [calib[i:i + 50] for i in range(0, 200, 50)]
    stats = quant.collect(digits_graph, batches, progress=False)
    assert list(stats) == quant.activations(digits_graph)
    assert len(stats) == 1 + len(digits_graph.nodes) and all(h.count for h in stats.values())
    assert stats == quant.collect(digits_graph, [calib[i:i + 40] for i in range(160, -1, -40)], progress=False)
    table = quant.calibrate(DIGITS_CNN, batches, cache=tmp_path / "digits.calib", progress=False)
    assert set(table) == set(stats) and table == quant.make_table(stats, model=table.fingerprint)
    for name, h in stats.items():
        assert 0 < table.threshold(name) <= h.absmax * (1 + 1e-12)
    optimized, _ = nbtrt.plan(DIGITS_CNN)  # fusion keeps the names of what it keeps
    assert set(quant.activations(optimized)) <= set(table)


@needs_digits
def test_digits_cnn_fake_quant_top1(digits, digits_graph):
    calib = digits["images"][digits["calib_idx"]]
    stats = quant.collect(digits_graph, [calib[i:i + 50] for i in range(0, 200, 50)], progress=False)
    images, labels = digits["images"][digits["test_idx"]], digits["labels"][digits["test_idx"]]
    fp32 = nbtrt.reference.run(digits_graph, {"image": images})["logits"]
    assert np.mean(fp32.argmax(1) == labels) == pytest.approx(0.9899, abs=1e-4)
    lines = []
    for calibrator in ("entropy", "minmax", "percentile"):
        table = quant.make_table(stats, calibrator)
        logits = quant.run_fake_quant(digits_graph, {"image": images}, table)["logits"]
        both = quant.run_fake_quant(digits_graph, {"image": images}, table, weights=True)["logits"]
        top1, top1_w = np.mean(logits.argmax(1) == labels), np.mean(both.argmax(1) == labels)
        lines.append(f"{calibrator}: int8 activations {100 * top1:.2f} %, + int8 weights {100 * top1_w:.2f} % "
                     f"(fp32 98.99 %), max |logit diff| {np.abs(both - fp32).max():.3f}")
        if calibrator == "entropy":
            assert top1 >= 0.9889 and top1_w >= 0.9889
    print("\n".join(lines))

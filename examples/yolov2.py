"""YOLOv2 from Darknet: build the cfg into an engine (its [region] layer is nbtrt's region plugin), run it
and decode the boxes as darknet's ``get_region_boxes`` + ``do_nms_sort`` do.

    python examples/yolov2.py                                   # ../shared/darknet/yolov2-voc.cfg, 416x416
    python examples/yolov2.py --cfg yolov2-voc.cfg --weights yolov2-voc.weights --image img.npy
    python examples/yolov2.py --reference                       # no GPU: the numpy reference (seconds)

Without ``--weights`` (and no ``.weights`` file beside the cfg) the weights are random, written by the
tests' writer (``tests/darknet_weights.py``): the boxes then mean nothing, but every step runs. The
image is a ``.npy`` array [3, H, W] with values in [0, 1] (RGB, already resized to the network's size),
or random. ``--reference`` runs the numpy reference interpreter instead of an engine (Numba's CUDA simulator is
far too slow for this network: use it with a small cfg); ``--check`` runs both and compares them. With
random weights hardly a box passes the default threshold: try ``--thresh 0.02``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("NBTRT_SHARED", os.path.join(HERE, "..", "..", "shared"))
VOC = ("aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike person "
       "pottedplant sheep sofa train tvmonitor").split()


def region_boxes(output: np.ndarray, region: dict, thresh: float) -> list[tuple[int, float, np.ndarray]]:
    """(class, probability, box [x, y, w, h] relative to the image) for every anchor, cell and class
    whose probability (objectness × class probability) exceeds ``thresh``; ``output`` is one image's
    region-layer output [num·(coords + 1 + classes), H, W] (after the region plugin)."""
    num, coords, classes = region["num"], region["coords"], region["classes"]
    _, h, w = output.shape
    anchors = np.asarray(region["anchors"], np.float64).reshape(num, 2)
    v = output.reshape(num, coords + 1 + classes, h, w).astype(np.float64)
    cols, rows = np.meshgrid(np.arange(w), np.arange(h))
    boxes = np.stack([(cols + v[:, 0]) / w, (rows + v[:, 1]) / h,
                      np.exp(v[:, 2]) * anchors[:, 0, None, None] / w,
                      np.exp(v[:, 3]) * anchors[:, 1, None, None] / h], axis=-1)  # [num, h, w, 4]
    probs = v[:, coords, None] * v[:, coords + 1:]                                 # [num, classes, h, w]
    found = []
    for n, c, j, i in zip(*np.nonzero(probs > thresh)):
        found.append((int(c), float(probs[n, c, j, i]), boxes[n, j, i]))
    return found


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two [x, y, w, h] boxes (centre, size)."""
    ix = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    iy = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
    inter = max(ix, 0.0) * max(iy, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def nms(detections: list, threshold: float) -> list:
    """Per class, most probable first: drop a box that overlaps a kept one by more than ``threshold``."""
    kept = []
    for det in sorted(detections, key=lambda d: -d[1]):
        if all(k[0] != det[0] or iou(k[2], det[2]) <= threshold for k in kept):
            kept.append(det)
    return kept


def load_network(cfg: str, weights: str | None, size: int | None):
    """The parsed graph; random weights written next to a temporary file when none are given."""
    from nbtrt.frontends.darknet import parse_darknet
    beside = os.path.splitext(cfg)[0] + ".weights"
    if weights is None and os.path.isfile(beside):
        weights = beside
    if weights is None:
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from darknet_weights import write_weights
        weights = os.path.join(tempfile.mkdtemp(), "random.weights")
        write_weights(cfg, weights, seed=0)
        print(f"no weights given: random weights in {weights}")
    return parse_darknet(cfg, weights, batch=1, width=size, height=size)


def run(graph, image: np.ndarray, use_reference: bool) -> np.ndarray:
    import nbtrt
    from nbtrt import reference
    start = time.perf_counter()
    if use_reference:
        out = reference.run(graph, {"data": image})
        print(f"reference: {time.perf_counter() - start:.2f} s")
    else:
        engine = nbtrt.compile(graph)
        built = time.perf_counter()
        engine.run({"data": image})
        again = time.perf_counter()
        out = engine.run({"data": image})
        print(f"engine: built in {built - start:.1f} s ({len(engine.kernels)} kernels); first run "
              f"{(again - built) * 1e3:.1f} ms, second {(time.perf_counter() - again) * 1e3:.1f} ms")
    return next(iter(out.values()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cfg", default=os.path.join(SHARED, "darknet", "yolov2-voc.cfg"))
    p.add_argument("--weights")
    p.add_argument("--image", help=".npy array [3, H, W] in [0, 1]")
    p.add_argument("--size", type=int, help="network input size (default: the cfg's)")
    p.add_argument("--thresh", type=float, default=0.24)
    p.add_argument("--nms", type=float, default=0.45)
    p.add_argument("--reference", action="store_true", help="run the numpy reference, not an engine")
    p.add_argument("--check", action="store_true", help="run both and compare")
    args = p.parse_args(argv)
    graph = load_network(args.cfg, args.weights, args.size)
    shape = graph.inputs[0].type.shape
    image = (np.load(args.image)[None].astype(np.float32) if args.image else
             np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32))
    if args.check:
        from nbtrt import reference
        want = next(iter(reference.run(graph, {"data": image}).values()))
    output = run(graph, image, args.reference)
    if args.check:
        err = float(np.abs(output - want).max() / max(np.abs(want).max(), 1e-30))
        print(f"engine vs reference: max relative error {err:.3g}")
        if err > 1e-3:
            return 1
    names = VOC if graph.region["classes"] == len(VOC) else [str(c) for c in range(graph.region["classes"])]
    detections = nms(region_boxes(output[0], graph.region, args.thresh), args.nms)
    print(f"{len(detections)} detections above {args.thresh}:")
    for c, prob, (x, y, w, h) in detections[:20]:
        print(f"  {names[c]:>12s} {prob:5.2f}  x {x:.3f} y {y:.3f} w {w:.3f} h {h:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

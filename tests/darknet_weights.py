"""Tests only: write seeded random darknet ``.weights`` files for a cfg (no trained weights are offline).

The writer walks the cfg on its own (channels per layer through conv, maxpool, route, reorg) so that it
cross-checks the frontend rather than reusing it. Values are scaled so that activations stay O(1)
through deep networks: weights ~ N(0, 1/fan_in), BN variance in [0.5, 1.5].
"""

from __future__ import annotations

import numpy as np

from nbtrt.frontends.darknet import read_cfg


def conv_layers(cfg_path, channels=None) -> list[dict]:
    """Per convolutional layer in order: layer index, filters, input channels, size, groups, batch_normalize."""
    sections = read_cfg(cfg_path)
    c = channels or int(sections[0][1]["channels"])
    out_channels, convs = [], []
    for layer, (kind, opts) in enumerate(sections[1:]):
        if kind in ("convolutional", "conv"):
            n = int(opts["filters"])
            convs.append({"layer": layer, "n": n, "c": c, "size": int(opts.get("size", 1)),
                          "groups": int(opts.get("groups", 1)), "bn": int(opts.get("batch_normalize", 0))})
            c = n
        elif kind == "route":
            refs = [int(r) for r in opts["layers"].split(",")]
            c = sum(out_channels[layer + r if r < 0 else r] for r in refs)
        elif kind == "reorg":
            c *= int(opts.get("stride", 1)) ** 2
        elif kind == "region":
            break
        out_channels.append(c)
    return convs


def random_params(cfg_path, seed: int = 0) -> list[dict]:
    """Seeded random parameters per conv layer: biases[, scales, rolling_mean, rolling_variance], weights."""
    rng = np.random.default_rng(seed)
    params = []
    for conv in conv_layers(cfg_path):
        n, cg, k = conv["n"], conv["c"] // conv["groups"], conv["size"]
        p = {"layer": conv["layer"], "biases": (0.1 * rng.standard_normal(n)).astype(np.float32)}
        if conv["bn"]:
            p["scales"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
            p["rolling_mean"] = (0.1 * rng.standard_normal(n)).astype(np.float32)
            p["rolling_variance"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        std = np.float32(1.0 / np.sqrt(cg * k * k))
        p["weights"] = rng.standard_normal((n, cg, k, k), dtype=np.float32) * std
        params.append(p)
    return params


def to_bytes(params, major: int = 0, minor: int = 2, revision: int = 0, seen: int = 0) -> bytes:
    """The .weights bytes: header (seen as int64 when major*10+minor >= 2, else int32), then the layers."""
    header = np.array([major, minor, revision], "<i4").tobytes()
    header += np.array([seen], "<i8" if major * 10 + minor >= 2 else "<i4").tobytes()
    keys = ("biases", "scales", "rolling_mean", "rolling_variance", "weights")
    return header + b"".join(p[k].astype("<f4").tobytes() for p in params for k in keys if k in p)


def write_weights(cfg_path, path, seed: int = 0, **header) -> list[dict]:
    """Write a random .weights file for ``cfg_path`` to ``path``; return the parameters written."""
    params = random_params(cfg_path, seed)
    with open(path, "wb") as f:
        f.write(to_bytes(params, **header))
    return params

"""Calibrators: from a tensor's :class:`AbsHistogram` to a threshold ``t``; its int8 scale is ``t / 127``.

- ``minmax``: ``t = absmax``; nothing is clipped.
- ``percentile`` (default 99.99): the upper edge of the first bin at which the cumulative count of
  ``|x|`` reaches ``p`` % of all values (zeros included), at most ``absmax``. So at least ``p`` % of the
  values are ``<= t``, and ``t`` exceeds the exact (inverted-CDF) percentile by less than one bin width.
- ``entropy``: TensorRT's IInt8EntropyCalibrator2 method ("8-bit Inference with TensorRT",
  Migacz 2017). For every candidate ``i`` in 128..n (n: the bins up to the one holding absmax) the
  reference distribution P is bins ``[0, i)`` with the count of every bin above folded into bin
  ``i - 1``; Q quantizes bins ``[0, i)`` (without those outliers) into 128 levels, then expands each
  level's count evenly over the bins of that level that are nonzero in P; the candidate with the least
  KL(P || Q) wins, ``t = i * bin_width`` (at most absmax). Where Q is 0 but P is not, KL is infinite
  (no smoothing). Level ``j`` covers bins ``[floor(j*i/128), floor((j+1)*i/128))``, so levels differ
  by at most one bin (rather than the last one taking the remainder). Exact zeros are left out of P
  and Q: int8 represents zero exactly whatever the threshold, and an atom of mass ``z`` present in
  both P and Q scales KL by ``1 - z`` without moving the argmin; left in, ReLU's spike of zeros in
  bin 0 would be smeared over level 0 by Q and push every threshold down (pytorch-quantization's
  ``bins[0] = bins[1]`` patches the same effect).

All candidates are evaluated at once from prefix sums: O(candidates x 128), a few ms per tensor.
"""

from __future__ import annotations

import numpy as np

from ..errors import CalibrationError
from .histogram import AbsHistogram

LEVELS = 128  # |q| in 0..127: 128 levels of int8 magnitude
START = 128  # the first candidate keeps 128 bins (one bin per level)
QMAX = 127


def minmax_threshold(h: AbsHistogram) -> float:
    return h.absmax


def percentile_threshold(h: AbsHistogram, percentile: float = 99.99) -> float:
    if h.count == 0 or h.absmax == 0:
        return h.absmax
    cumulative = np.cumsum(h.counts)
    k = int(np.searchsorted(cumulative, percentile / 100.0 * h.count, side="left"))
    return min((k + 1) * h.bin_width, h.absmax)


def kl_divergences(counts: np.ndarray, levels: int = LEVELS, start: int = START) -> tuple[np.ndarray, np.ndarray]:
    """(candidates i, KL(P_i || Q_i)) for a histogram whose last bin is nonzero (see module docstring)."""
    c = np.asarray(counts, dtype=np.float64)
    n, total = c.size, c.sum()
    prefix = np.concatenate([[0.0], np.cumsum(c)])  # prefix[k] = sum(c[:k])
    nonzero = np.concatenate([[0], np.cumsum(c > 0)])
    prefix_clogc = np.concatenate([[0.0], np.cumsum(_xlogx(c))])
    i = np.arange(start, n + 1)
    outliers = total - prefix[i]
    last = c[i - 1] + outliers  # P's last bin
    p_log_p = (prefix_clogc[i - 1] + _xlogx(last)) / total - np.log(total)
    edges = (np.arange(levels + 1)[None, :] * i[:, None]) // levels
    level_sums = prefix[edges[:, 1:]] - prefix[edges[:, :-1]]  # Q's counts per level
    level_nonzero = (nonzero[edges[:, 1:]] - nonzero[edges[:, :-1]]).astype(np.float64)
    level_nonzero[:, -1] += (c[i - 1] == 0) & (outliers > 0)  # P's last bin is nonzero through outliers
    p_mass = level_sums.copy()
    p_mass[:, -1] += outliers
    q_total = prefix[i][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.log(level_sums / (np.maximum(level_nonzero, 1.0) * q_total))
        cross = np.where(p_mass > 0, p_mass * log_q, 0.0).sum(axis=1) / total
    kl = p_log_p - cross
    kl[~np.isfinite(kl)] = np.inf
    return i, np.maximum(kl, 0.0)


def entropy_threshold(h: AbsHistogram, levels: int = LEVELS, start: int = START) -> float:
    counts = h.counts.astype(np.float64)
    counts[0] -= h.zeros
    used = np.flatnonzero(counts)
    if used.size == 0 or used[-1] + 1 <= start:  # too few bins to choose from: keep the whole range
        return h.absmax
    candidates, kl = kl_divergences(counts[:used[-1] + 1], levels, start)
    best = int(candidates[int(np.argmin(kl))])
    return min(best * h.bin_width, h.absmax)


CALIBRATORS = {"entropy": entropy_threshold, "minmax": minmax_threshold, "percentile": percentile_threshold}


def check_calibrator(name, percentile: float = 99.99) -> str:
    """Validate the calibrator's name (and percentile); return its label for caches and tables."""
    if name not in CALIBRATORS:
        raise CalibrationError(f"unknown calibrator {name!r}; choose one of {', '.join(map(repr, CALIBRATORS))}")
    if name != "percentile":
        return name
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise CalibrationError(f"percentile must be a number in (0, 100], got {percentile!r}")
    return f"percentile({float(percentile)!r})"


def threshold(h: AbsHistogram, calibrator: str, percentile: float = 99.99) -> float:
    if calibrator == "percentile":
        return percentile_threshold(h, percentile)
    return CALIBRATORS[calibrator](h)


def scale_of(threshold_value: float) -> float:
    """The int8 scale of a threshold: ``t / 127``; a tensor that was always 0 gets the scale of ``t = 1``."""
    return (threshold_value if threshold_value > 0 else 1.0) / QMAX


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)

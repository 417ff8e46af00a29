"""Per-tensor statistics for calibration: abs-max and a 2048-bin histogram of ``|x|``.

TensorRT's entropy calibrator histograms ``|x|`` into 2048 bins over ``[0, range)`` and lets the range
grow as batches arrive. Growing it from the first batch's max (as pytorch-quantization does) makes the
bin width, and so the result, depend on which batch came first. Here the range is always a power of
two, ``top = 2**e``, the smallest one *strictly* above the abs-max seen so far, and bin ``j`` holds the
values with ``floor(|x| * 2**(11 - e)) == j`` (a power-of-two scaling: exact in floating point).
When a later batch needs a larger range, ``top`` doubles ``d`` times and every ``2**d`` neighbouring
bins add into one: ``floor(floor(y) / 2**d) == floor(y / 2**d)``, so the merged counts are exactly
those a single pass over all values would give. The statistics are therefore a function of the
multiset of values alone: batch order, batch size and how partial results are merged do not matter,
merging is commutative and associative, and integer counts add without rounding.

The price is resolution: the abs-max lies in the upper half of the range, so the values span between
1025 and 2048 of the bins (TensorRT's span all 2048). Exact zeros (ReLU outputs are full of them) are
counted in bin 0 and also apart, in ``zeros``, for the entropy calibrator (see ``calibrators``).
Non-finite values (inf, NaN) are left out of every statistic and counted in ``nonfinite``.
"""

from __future__ import annotations

import numpy as np

BINS = 2048
LOG2_BINS = 11
CHUNK = 1 << 22  # values binned at a time (bounds the temporaries of a large activation)


class AbsHistogram:
    """Statistics of ``|x|`` of one tensor over every calibration batch seen so far."""

    __slots__ = ("counts", "exponent", "absmax", "count", "zeros", "nonfinite")

    def __init__(self):
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.exponent: int | None = None  # range is [0, 2**exponent); None until a nonzero value is seen
        self.absmax = 0.0
        self.count = 0  # finite values seen (zeros included)
        self.zeros = 0
        self.nonfinite = 0

    @property
    def top(self) -> float:
        """The upper end of the histogram's range (0.0 while every value seen was zero)."""
        return 0.0 if self.exponent is None else float(np.ldexp(1.0, self.exponent))

    @property
    def bin_width(self) -> float:
        return self.top / BINS

    def add(self, x) -> "AbsHistogram":
        """Add the values of array ``x``; returns self."""
        a = np.abs(np.asarray(x))
        if a.dtype.kind != "f":
            a = a.astype(np.float64)
        elif a.dtype.itemsize < 4:
            a = a.astype(np.float32)
        a = a.reshape(-1)
        if a.size > CHUNK:
            for start in range(0, a.size, CHUNK):
                self.add(a[start:start + CHUNK])
            return self
        finite = np.isfinite(a)
        if not finite.all():
            self.nonfinite += int(a.size - np.count_nonzero(finite))
            a = a[finite]
        if a.size == 0:
            return self
        other = AbsHistogram()
        other.absmax = float(a.max())
        other.count = int(a.size)
        other.zeros = int(a.size - np.count_nonzero(a))
        if other.absmax > 0:
            other.exponent = int(np.frexp(other.absmax)[1])  # absmax < 2**e <= 2 * absmax
            bins = np.floor(np.ldexp(a, LOG2_BINS - other.exponent)).astype(np.int64)
            other.counts = np.bincount(bins, minlength=BINS).astype(np.int64)
        else:
            other.counts[0] = a.size
        return self.merge(other)

    def merge(self, other: "AbsHistogram") -> "AbsHistogram":
        """Add ``other``'s statistics into this one (exact; see the module docstring); returns self."""
        exponents = [e for e in (self.exponent, other.exponent) if e is not None]
        exponent = max(exponents) if exponents else None
        self.counts = _rebin(self.counts, self.exponent, exponent) + _rebin(other.counts, other.exponent, exponent)
        self.exponent = exponent
        self.absmax = max(self.absmax, other.absmax)
        self.count += other.count
        self.zeros += other.zeros
        self.nonfinite += other.nonfinite
        return self

    def copy(self) -> "AbsHistogram":
        new = AbsHistogram()
        return new.merge(self)

    def __eq__(self, other) -> bool:
        return (isinstance(other, AbsHistogram) and self.exponent == other.exponent and self.absmax == other.absmax
                and self.count == other.count and self.zeros == other.zeros and self.nonfinite == other.nonfinite
                and np.array_equal(self.counts, other.counts))

    __hash__ = None

    def __repr__(self) -> str:
        return (f"AbsHistogram(absmax={self.absmax:.6g}, top={self.top:g}, count={self.count}, "
                f"zeros={self.zeros}, nonfinite={self.nonfinite})")


def _rebin(counts: np.ndarray, old: int | None, new: int | None) -> np.ndarray:
    """Counts over ``[0, 2**old)`` re-expressed over ``[0, 2**new)`` (new >= old): sums of 2**d bins."""
    if old is None or old == new:  # old None: only zeros so far, and they stay in bin 0 at any range
        return counts.copy()
    shift = new - old
    if shift >= LOG2_BINS:
        out = np.zeros(BINS, dtype=np.int64)
        out[0] = counts.sum()
        return out
    merged = counts.reshape(-1, 1 << shift).sum(axis=1)
    return np.concatenate([merged, np.zeros(BINS - merged.size, dtype=np.int64)])

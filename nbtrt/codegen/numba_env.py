"""The one place nbtrt imports ``numba.cuda``, with the fixes our environment needs.

numba-cuda 0.30.4 calls ``np.row_stack``, which numpy 2.5 removed: the first kernel compile raises
``AttributeError: module 'numpy' has no attribute 'row_stack'``. ``np.vstack`` is the same function
(row_stack was its alias), so we restore the alias before numba.cuda compiles anything.
"""

from __future__ import annotations

import numpy as np

if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402  (after the fix above)


def simulated() -> bool:
    """True when Numba's CUDA simulator stands in for a GPU (NUMBA_ENABLE_CUDASIM=1)."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def gpu_available() -> bool:
    if simulated():
        return False
    try:
        return cuda.is_available()
    except Exception:
        return False


__all__ = ["cuda", "simulated", "gpu_available"]

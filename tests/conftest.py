import os
import sys

import pytest

# Generated kernels run in Numba's CUDA simulator unless the caller chose otherwise
# (the GPU suite runs with NUMBA_ENABLE_CUDASIM=0 through the device tool).
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

sys.path.insert(0, os.path.dirname(__file__))

# ../shared beside the checkout; NBTRT_SHARED points elsewhere (the GPU machine gets a carried copy).
SHARED = os.environ.get("NBTRT_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))

# Conformance counts, printed at the end of the run (see test_conformance.py).
COUNTS: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if COUNTS:
        terminalreporter.section("conformance counts")
        for line in COUNTS:
            terminalreporter.write_line(line)


def has_gpu() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda
        return cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if has_gpu():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

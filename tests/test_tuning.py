"""The tuner's candidate lists (pure Python; tuning itself times kernels on the GPU: tests/gpu)."""

from types import SimpleNamespace

from nbtrt.codegen import conv
from nbtrt.tuning.tuner import FAST_CANDIDATES, candidates


def family(tactics):
    return SimpleNamespace(TACTICS=tactics, valid=lambda node, t, outs, ins: t.get("valid", True))


def test_fast_tuning_tries_the_tactics_most_like_the_heuristics():
    split = next(t for t in conv.TACTICS if t.get("splits") == 8)
    got = candidates(family(conv.TACTICS), None, "fast", split)
    assert got[0] == split and len(got) == FAST_CANDIDATES
    assert all(t["algorithm"] == "mma_async" and "splits" in t for t in got)  # split-K neighbours
    plain = next(t for t in conv.TACTICS if t.get("algorithm") == "mma_async")
    assert all("splits" not in t for t in candidates(family(conv.TACTICS), None, "fast", plain))


def test_full_tuning_tries_every_valid_tactic_and_never_an_invalid_one():
    tactics = [dict(algorithm="a", x=1), dict(algorithm="a", x=2, valid=False), dict(algorithm="b", x=1)]
    assert candidates(family(tactics), None, "full", tactics[0]) == [tactics[0], tactics[2]]


def test_pipelined_tactics_are_launch_bounded_to_the_register_cap():
    """Every pipelined tensor-core tactic asks for as many resident blocks as REGISTERS per thread
    allow (ptxas then caps its registers: without the bound a 128x128 tile took 136, one block per SM)."""
    from nbtrt.codegen import mma_async
    for t in mma_async.TACTICS:
        threads = mma_async.AsyncTile.of(t).threads
        assert t["min_blocks"] * threads * mma_async.REGISTERS == 65536, t

"""benchmarks.lml's sweep: from N = 5,600 on the FLOP-bound fraction is taken against the
run's opening GEMM rate (the GEMM interleaved with a case that large slows 2-3x after it)."""

from __future__ import annotations

import numpy as np
import pytest

lml_benchmark = pytest.importorskip("benchmarks.lml")


def _record(n: int) -> dict:
    # Three rounds: the case took 1.0, 2.0 and 4.0 s, the interleaved 2 GFLOP GEMM 0.1 s each (20 GFLOP/s).
    return {
        "n": n,
        "flops": 10e9,
        "median_s": 2.0,
        "all_s": [9.0, 1.0, 2.0, 4.0],
        "gemm_all_s": [0.1, 0.1, 0.1],
        "gemm_gflop": 2.0,
        "gemm_gflops": 20.0,
    }


def test_small_sizes_use_the_interleaved_gemm():
    fraction, basis = lml_benchmark.sweep_fraction(_record(1400), opening_gflops=100.0)
    per_round = [10 / 20 / s for s in (1.0, 2.0, 4.0)]  # FLOPs / rate / time within each round
    assert fraction == pytest.approx(float(np.median(per_round)))
    assert "interleaved" in basis


@pytest.mark.parametrize("n", [5600, 10000])
def test_large_sizes_use_the_opening_gemm_rate(n):
    fraction, basis = lml_benchmark.sweep_fraction(_record(n), opening_gflops=100.0)
    assert fraction == pytest.approx(10 / 100 / 2.0)
    assert "opening" in basis and "100 GFLOP/s" in basis

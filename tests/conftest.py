"""Shared test fixtures: dtype-aware tolerances and the ../shared data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gpllm

# Tests compute in float64 unless they ask otherwise, as a user who calls use_float64() does.
gpllm.use_float64()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def rtol_for(dtype) -> float:
    """Relative tolerance for a result computed in ``dtype``: a fixed multiple of
    sqrt(eps) covers the O(N) rounding growth of a Cholesky at test sizes."""
    return float(np.sqrt(np.finfo(dtype).eps)) * (10.0 if np.dtype(dtype) == np.float32 else 1.0)


@pytest.fixture
def shared_data() -> Path:
    """The real data folder beside the repository; skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA

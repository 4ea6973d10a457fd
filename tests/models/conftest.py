"""Shared fixtures for the non-GP model tests: small random data in both precisions."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture
def tol(dtype):
    """Tolerances for comparing against float64 NumPy/sklearn references."""
    return {"rtol": 2e-4, "atol": 2e-4} if dtype == np.float32 else {"rtol": 1e-9, "atol": 1e-9}


def _make_data(n=30, q=4, g=12, m=7, seed=0, dtype=np.float64):
    """Z_train (n, q), Y_train (n, g) with a smooth signal plus noise, Z_test (m, q)."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n + m, q))
    B = rng.normal(size=(q, g))
    Y = np.tanh(Z @ B) + 0.3 * rng.normal(size=(n + m, g)) + 2.0
    return Z[:n].astype(dtype), Y[:n].astype(dtype), Z[n:].astype(dtype)


@pytest.fixture
def make_data():
    """The data factory ``(n, q, g, m, seed, dtype) -> (Z_train, Y_train, Z_test)``."""
    return _make_data

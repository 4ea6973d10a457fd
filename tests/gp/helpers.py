"""Small problems and a NumPy/SciPy reference for the GP core tests."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sl


def problem(n=40, q=3, d=5, seed=0, dtype=np.float64):
    """Deterministic Z (n, q), Y (n, d) with structure a GP can fit."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, q))
    Y = np.sin(Z @ rng.normal(size=(q, d))) + 0.1 * rng.normal(size=(n, d))
    return Z.astype(dtype), Y.astype(dtype)


def rbf_gram(Z1, Z2, variance, lengthscale):
    d2 = ((Z1[:, None, :] - Z2[None, :, :]) ** 2).sum(-1)
    return variance * np.exp(-0.5 * d2 / lengthscale**2)


def reference_lml(Z, Y, variance, lengthscale, noise):
    """Eq. 1 by SciPy: one cho_factor, summed over outputs."""
    n, d = Y.shape
    A = rbf_gram(Z, Z, variance, lengthscale) + noise * np.eye(n)
    factor = sl.cho_factor(A, lower=True)
    alpha = sl.cho_solve(factor, Y)
    logdet = 2.0 * np.sum(np.log(np.diag(factor[0])))
    return -0.5 * np.sum(Y * alpha) - 0.5 * d * logdet - 0.5 * n * d * np.log(2 * np.pi)

"""Leave-one-out predictions from the batched fit program (``fit_predict_batched(leave_one_out=...)``)
against brute force in NumPy: N fits of the remaining points with the hyperparameters held."""

from __future__ import annotations

import operator

import jax
import numpy as np
import pytest

from gpllm import gp
from gpllm.errors import InputError
from tests.gp.helpers import problem, rbf_gram

OPTIONS = gp.FitOptions(max_steps=30)


def brute_force_loo(Z, Y, variance, lengthscale, noise, refit_mean: bool, scales=None):
    """(residual (N, D), var (N,) or (N, D)): for each i, the GP on the other N - 1 points
    (their mean as the offset when ``refit_mean``, else zero) predicting y_i, noise included."""
    n = len(Z)
    residual, var = np.empty_like(Y), np.empty(n)
    for i in range(n):
        rest = np.arange(n) != i
        offset = Y[rest].mean(axis=0) if refit_mean else 0.0
        A = rbf_gram(Z[rest], Z[rest], variance, lengthscale) + noise * np.eye(n - 1)
        k = rbf_gram(Z[rest], Z[i : i + 1], variance, lengthscale)[:, 0]
        weights = np.linalg.solve(A, k)
        residual[i] = Y[i] - (offset + weights @ (Y[rest] - offset))
        var[i] = variance - k @ weights + noise
    return residual, var if scales is None else var[:, None] * scales[None, :]


def _fit(Zb, Yb, refit_mean: bool, **options):
    Yc = Yb - Yb.mean(axis=1, keepdims=True) if refit_mean else Yb
    kind = "refitted_mean" if refit_mean else "zero_mean"
    options = gp.FitOptions(max_steps=30, **options)
    return Yc, gp.fit_predict_batched(gp.RBF(), Zb, Yc, Zb[:, :3], options=options, leave_one_out=kind)


@pytest.mark.parametrize("refit_mean", [False, True])
def test_batched_leave_one_out_matches_brute_force(refit_mean):
    Z, Y = problem(n=24, q=2, d=3, seed=7)
    Zb, Yb = np.stack([Z[:20], Z[4:]]), np.stack([Y[:20], Y[4:]])
    _, (fits, _, _, loo) = _fit(Zb, Yb, refit_mean)
    assert loo.residual.shape == (2, 20, 3) and loo.var.shape == (2, 20)
    for b in range(2):
        values = gp.params_to_values(gp.RBF(), jax.tree.map(operator.itemgetter(b), fits.params))
        kernel = {k: float(v) for k, v in values["kernel"].items()}
        residual, var = brute_force_loo(
            Zb[b], Yb[b], kernel["variance"], kernel["lengthscale"], float(values["noise"]), refit_mean
        )
        np.testing.assert_allclose(np.asarray(loo.residual[b]), residual, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(np.asarray(loo.var[b]), var, rtol=1e-8)


def test_per_output_scales_scale_the_leave_one_out_variance():
    """With per-output scales, output g's held-out variance is c_g times the shared one, c_g the
    fitted scale |L^-1 y_g|^2 / N (which the posterior's factor gives by NumPy here)."""
    Z, Y = problem(n=16, q=2, d=3, seed=8)
    Y = Y * np.array([1.0, 3.0, 0.3])
    Yc, (fits, _, _, loo) = _fit(Z[None], Y[None], True, output_scales="per_output")
    values = gp.params_to_values(gp.RBF(), jax.tree.map(operator.itemgetter(0), fits.params))
    kernel = {k: float(v) for k, v in values["kernel"].items()}
    noise = float(values["noise"])
    A = rbf_gram(Z, Z, kernel["variance"], kernel["lengthscale"]) + noise * np.eye(len(Z))
    W = np.linalg.solve(np.linalg.cholesky(A), Yc[0])
    scales = np.sum(W * W, axis=0) / len(Z)
    residual, var = brute_force_loo(Z, Y, kernel["variance"], kernel["lengthscale"], noise, True, scales)
    np.testing.assert_allclose(np.asarray(loo.residual[0]), residual, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(loo.var[0]), var, rtol=1e-8)


def test_without_leave_one_out_three_items_come_back():
    Z, Y = problem(n=10, q=2, d=2, seed=9)
    assert len(gp.fit_predict_batched(gp.RBF(), Z[None], Y[None], Z[None, :2], options=OPTIONS)) == 3


def test_an_unknown_leave_one_out_mean_is_refused_by_name():
    Z, Y = problem(n=10, q=2, d=2, seed=9)
    with pytest.raises(InputError, match="leave_one_out must be None or one of .*'refitted_mean'.*got 'centred'"):
        gp.fit_predict_batched(gp.RBF(), Z[None], Y[None], Z[None, :2], options=OPTIONS, leave_one_out="centred")

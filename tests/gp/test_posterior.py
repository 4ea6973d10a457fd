"""Posterior mean, variance and samples against scikit-learn and moment checks."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as skk

from gpllm import gp
from gpllm.errors import ShapeError
from tests.gp.helpers import problem

VAR, LS, NOISE = 1.2, 1.1, 0.05


@pytest.fixture(scope="module")
def fitted():
    Z, Y = problem(n=35, d=4)
    Zs = np.concatenate([Z[:3], problem(n=6, seed=9)[0] * 1.5])  # some seen, some new inputs
    params = gp.params_from_values(gp.RBF(), {"variance": VAR, "lengthscale": LS}, NOISE)
    post = gp.condition(gp.RBF(), params, Z, Y)
    return Z, Y, Zs, params, post


def test_mean_and_latent_variance_match_sklearn(fitted):
    Z, Y, Zs, _, post = fitted
    # alpha=noise puts the noise in the likelihood only: sklearn's std is then the latent one.
    sk = GaussianProcessRegressor(skk.ConstantKernel(VAR) * skk.RBF(LS), optimizer=None, alpha=NOISE).fit(Z, Y)
    sk_mean, sk_std = sk.predict(Zs, return_std=True)
    mean, var = gp.predict(gp.RBF(), post, Zs, include_noise=False)
    np.testing.assert_allclose(mean, sk_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.sqrt(var), sk_std[:, 0], rtol=1e-7, atol=1e-9)


def test_noisy_variance_matches_sklearn_white_kernel(fitted):
    Z, Y, Zs, _, post = fitted
    sk = GaussianProcessRegressor(
        skk.ConstantKernel(VAR) * skk.RBF(LS) + skk.WhiteKernel(NOISE), optimizer=None, alpha=0.0
    ).fit(Z, Y)
    sk_mean, sk_std = sk.predict(Zs, return_std=True)
    mean, var = gp.predict(gp.RBF(), post, Zs, include_noise=True)
    np.testing.assert_allclose(mean, sk_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.sqrt(var), sk_std[:, 0], rtol=1e-7)


def test_samples_have_the_predictive_moments(fitted):
    _, _, Zs, _, post = fitted
    Zs = Zs[3:6]
    draws = np.asarray(gp.sample(gp.RBF(), post, Zs, jax.random.key(0), n_samples=4000))
    assert draws.shape == (4000, 3, 4)
    mean, var = gp.predict(gp.RBF(), post, Zs, include_noise=True)
    se = np.sqrt(np.asarray(var))[:, None] / np.sqrt(4000)
    assert np.all(np.abs(draws.mean(0) - np.asarray(mean)) < 5 * se)
    # Sample variance of a Gaussian has relative SE sqrt(2 / n) ~ 2.2%.
    np.testing.assert_allclose(draws.var(0), np.broadcast_to(np.asarray(var)[:, None], (3, 4)), rtol=0.12)


def test_prediction_rejects_wrong_width(fitted):
    _, _, Zs, _, post = fitted
    with pytest.raises(ShapeError, match="columns"):
        gp.predict(gp.RBF(), post, Zs[:, :2])


@pytest.mark.slow
def test_float64_hyperparameters_serve_float32_data(fitted):
    """A saved (float64) fit used with float32 inputs: computed in float32, not a LAPACK dtype error."""
    Z, Y, Zs, params, post64 = fitted
    params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)  # strongly typed, as when loaded
    Z32, Y32, Zs32 = (np.asarray(a, np.float32) for a in (Z, Y, Zs))
    lml32 = gp.log_marginal_likelihood(gp.RBF(), params, Z32, Y32)
    assert lml32.value.dtype == np.float32
    lml64 = gp.log_marginal_likelihood(gp.RBF(), params, Z, Y)
    np.testing.assert_allclose(float(lml32.value), float(lml64.value), rtol=1e-4)
    post32 = gp.condition(gp.RBF(), params, Z32, Y32)
    mean32, var32 = gp.predict(gp.RBF(), post32, Zs32, include_noise=False)
    mean64, var64 = gp.predict(gp.RBF(), post64, Zs, include_noise=False)
    assert mean32.dtype == var32.dtype == np.float32
    np.testing.assert_allclose(mean32, mean64, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(var32, var64, rtol=1e-3, atol=1e-5)

"""Eq. 1 against scikit-learn, GPJax and SciPy; both paths; gradients; dtypes; jitter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as skk

from gpllm import gp
from gpllm.gp.objective import gaussian_lml, lml, prepare_targets
from tests.conftest import rtol_for
from tests.gp.helpers import problem, rbf_gram, reference_lml

VAR, LS, NOISE = 1.4, 0.9, 0.25


def params(dtype=np.float64):
    return jax.tree.map(
        lambda x: jnp.asarray(x, dtype),
        gp.params_from_values(gp.RBF(), {"variance": VAR, "lengthscale": LS}, NOISE),
    )


@pytest.mark.slow
@pytest.mark.parametrize("d", [3, 60], ids=["D<N", "D>N"])
def test_matches_sklearn_log_marginal_likelihood(d):
    Z, Y = problem(n=40, d=d)
    sk = GaussianProcessRegressor(
        skk.ConstantKernel(VAR) * skk.RBF(LS) + skk.WhiteKernel(NOISE), optimizer=None, alpha=0.0
    ).fit(Z, Y)
    expected = sk.log_marginal_likelihood(sk.kernel_.theta)
    for path in ("direct", "gram"):
        ours = gp.log_marginal_likelihood(gp.RBF(), params(), Z, Y, path=path)
        np.testing.assert_allclose(float(ours.value), expected, rtol=1e-8)
        assert float(ours.jitter) == 0.0


def test_equals_sum_of_gpjax_single_output_likelihoods():
    import gpjax as gpx

    Z, Y = problem(n=30, d=4)
    prior = gpx.gps.Prior(
        mean_function=gpx.mean_functions.Zero(),
        kernel=gpx.kernels.RBF(lengthscale=LS, variance=VAR),
        jitter=0.0,
    )
    model = prior * gpx.likelihoods.Gaussian(obs_stddev=np.sqrt(NOISE))
    per_output = [
        float(gpx.objectives.conjugate_mll(model, gpx.Dataset(X=jnp.asarray(Z), y=jnp.asarray(Y[:, [j]]))))
        for j in range(Y.shape[1])
    ]
    ours = gp.log_marginal_likelihood(gp.RBF(), params(), Z, Y)
    np.testing.assert_allclose(float(ours.value), sum(per_output), rtol=1e-8)


@pytest.mark.parametrize("n,d", [(25, 4), (25, 80), (60, 2)])
def test_matches_scipy_reference_and_paths_agree(n, d):
    Z, Y = problem(n=n, d=d, seed=n + d)
    expected = reference_lml(Z, Y, VAR, LS, NOISE)
    direct = gp.log_marginal_likelihood(gp.RBF(), params(), Z, Y, path="direct").value
    gram = gp.log_marginal_likelihood(gp.RBF(), params(), Z, Y, path="gram").value
    np.testing.assert_allclose(float(direct), expected, rtol=1e-10)
    np.testing.assert_allclose(float(gram), float(direct), rtol=1e-10)


def test_centred_rank_deficient_targets_on_gram_path():
    Z, Y = problem(n=30, d=50)
    Y = Y - Y.mean(axis=0)  # rank N - 1: a Cholesky of Y Y^T would fail, the QR does not
    direct = gp.log_marginal_likelihood(gp.RBF(), params(), Z, Y, path="direct").value
    gram = gp.log_marginal_likelihood(gp.RBF(), params(), Z, Y, path="gram").value
    np.testing.assert_allclose(float(gram), float(direct), rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["direct", "gram"])
@pytest.mark.parametrize(
    "kernel", [gp.RBF(), gp.Matern32() + gp.Linear(), gp.RBF(ard=True)], ids=["rbf", "m32+lin", "ard"]
)
def test_gradient_matches_finite_differences(path, kernel):
    Z, Y = problem(n=20, d=6)
    Z, Y = jnp.asarray(Z), jnp.asarray(Y)
    p0 = gp.init_params(kernel, Z, Y)
    targets = prepare_targets(Y, path)
    check_grads(lambda p: lml(kernel, p, Z, targets).value, (p0,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_gradient_with_respect_to_inputs_and_outputs():
    # The custom VJP must also be right for d/dZ and d/dY, not only the hyperparameters.
    Z, Y = problem(n=15, d=4)

    def f(Z, Y):
        return lml(gp.RBF(), params(), Z, prepare_targets(Y, "direct")).value

    check_grads(f, (jnp.asarray(Z), jnp.asarray(Y)), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)
    A = jnp.asarray(rbf_gram(Z, Z, VAR, LS) + NOISE * np.eye(15))
    check_grads(
        lambda A: gaussian_lml(A, jnp.asarray(Y), jnp.asarray(4.0)).value,
        (A,),
        order=1,
        modes=["rev"],
        atol=1e-5,
        rtol=1e-5,
    )


@pytest.mark.slow
def test_value_and_grad_entry_point_agrees_with_autodiff_through_cholesky():
    Z, Y = problem(n=30, d=8)
    Z, Y = jnp.asarray(Z), jnp.asarray(Y)

    def autodiff_lml(p):
        A = gp.RBF().gram(jax.tree.map(jax.nn.softplus, p.kernel), Z) + jax.nn.softplus(p.noise) * jnp.eye(30)
        L = jnp.linalg.cholesky(A)
        W = jax.scipy.linalg.solve_triangular(L, Y, lower=True)
        return -0.5 * jnp.sum(W**2) - 8 * jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * 30 * 8 * np.log(2 * np.pi)

    value, grad = gp.value_and_grad(gp.RBF(), params(), Z, prepare_targets(Y))
    ref_value, ref_grad = jax.value_and_grad(autodiff_lml)(params())
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["direct", "gram"])
def test_float32_agrees_with_float64(path):
    Z, Y = problem(n=50, d=70)
    v64, g64 = gp.value_and_grad(gp.RBF(), params(np.float64), jnp.asarray(Z), prepare_targets(jnp.asarray(Y), path))
    Z32, Y32 = jnp.asarray(Z, jnp.float32), jnp.asarray(Y, jnp.float32)
    v32, g32 = gp.value_and_grad(gp.RBF(), params(np.float32), Z32, prepare_targets(Y32, path))
    assert v32.dtype == jnp.float32
    tol = rtol_for(np.float32)
    np.testing.assert_allclose(float(v32), float(v64), rtol=tol)
    scale = max(abs(float(leaf)) for leaf in jax.tree.leaves(g64))
    for a, b in zip(jax.tree.leaves(g32), jax.tree.leaves(g64)):
        np.testing.assert_allclose(float(a), float(b), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_jitter_rescues_duplicated_inputs_with_zero_noise(dtype):
    Z, Y = problem(n=20, d=3, dtype=dtype)
    Z, Y = np.concatenate([Z, Z]), np.concatenate([Y, Y])  # singular K
    p = jax.tree.map(
        lambda x: jnp.asarray(x, dtype), gp.params_from_values(gp.RBF(), {"variance": VAR, "lengthscale": LS}, 1e-30)
    )
    result = gp.log_marginal_likelihood(gp.RBF(), p, Z, Y)
    assert np.isfinite(float(result.value))
    assert float(result.jitter) > 0
    # The jitter reported is the one that makes a plain factorisation succeed.
    A = rbf_gram(Z.astype(np.float64), Z.astype(np.float64), VAR, LS) + float(result.jitter) * np.eye(40)
    np.linalg.cholesky(A)
    value, grad = gp.value_and_grad(gp.RBF(), p, jnp.asarray(Z), prepare_targets(jnp.asarray(Y)))
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grad))

"""Per-output scales: the profile likelihood, its gradient and predictions against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from jax.test_util import check_grads

from gpllm import gp
from gpllm.errors import InputError
from gpllm.gp.memory import gp_peak_bytes
from gpllm.gp.objective import lml
from tests.gp.helpers import problem, rbf_gram

VAR, LS, NOISE = 1.3, 0.9, 0.2
PARAMS = gp.params_from_values(gp.RBF(), {"variance": VAR, "lengthscale": LS}, NOISE)


def scaled_problem(n=25, d=6, seed=0):
    """Outputs whose spreads differ by orders of magnitude, as genes' do."""
    Z, Y = problem(n=n, d=d, seed=seed)
    return Z, Y * np.logspace(-2, 1, d)


def numpy_profile_lml(Z, Y):
    """sum_g log N(y_g; 0, c_g A) with the maximum-likelihood c_g = y_g^T A^-1 y_g / N plugged in."""
    n, _ = Y.shape
    A = rbf_gram(Z, Z, VAR, LS) + NOISE * np.eye(n)
    factor = sl.cho_factor(A, lower=True)
    c = np.sum(Y * sl.cho_solve(factor, Y), axis=0) / n
    logdet = 2 * np.sum(np.log(np.diag(factor[0])))
    quad = np.sum(Y * sl.cho_solve(factor, Y), axis=0) / c
    return float(np.sum(-0.5 * quad - 0.5 * (n * np.log(c) + logdet) - 0.5 * n * np.log(2 * np.pi))), c


@pytest.mark.parametrize("path", ["auto", "direct"])
def test_profile_lml_equals_numpy_with_the_mle_scales_plugged_in(path):
    Z, Y = scaled_problem(d=40)  # D > N: "auto" must still take the direct path
    ours = gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y, path=path, output_scales="per_output").value
    np.testing.assert_allclose(float(ours), numpy_profile_lml(Z, Y)[0], rtol=1e-10)


def test_profile_lml_is_at_least_eq1_at_the_same_hyperparameters():
    for seed in range(3):
        Z, Y = scaled_problem(seed=seed)
        shared = float(gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y).value)
        profile = float(gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y, output_scales="per_output").value)
        assert profile >= shared
    # Equal where every output's ML scale is 1: Y drawn so that y^T A^-1 y = N exactly.
    Z, Y = scaled_problem()
    _, c = numpy_profile_lml(Z, Y)
    unit = Y / np.sqrt(c)
    np.testing.assert_allclose(
        float(gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, unit, output_scales="per_output").value),
        float(gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, unit).value),
        rtol=1e-12,
    )


def test_gradient_matches_finite_differences_and_autodiff():
    Z, Y = (jnp.asarray(a) for a in scaled_problem(n=15, d=5))
    targets = gp.prepare_targets(Y, output_scales="per_output")
    check_grads(lambda p: lml(gp.RBF(), p, Z, targets).value, (PARAMS,), order=1, modes=("rev",))

    def autodiff(p):
        A = gp.RBF().gram(jax.tree.map(jax.nn.softplus, p.kernel), Z) + jax.nn.softplus(p.noise) * jnp.eye(15)
        L = jnp.linalg.cholesky(A)
        q = jnp.sum(jax.scipy.linalg.solve_triangular(L, Y, lower=True) ** 2, axis=0)
        return -7.5 * jnp.sum(jnp.log(q / 15)) - 5 * jnp.sum(jnp.log(jnp.diag(L))) - 37.5 * (1 + np.log(2 * np.pi))

    value, grad = gp.value_and_grad(gp.RBF(), PARAMS, Z, Y, output_scales="per_output")
    ref_value, ref_grad = jax.value_and_grad(autodiff)(PARAMS)
    np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-12)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_predictions_match_numpy():
    Z, Y = scaled_problem()
    Zs = problem(n=4, seed=7)[0]
    post = gp.condition(gp.RBF(), PARAMS, Z, Y, output_scales="per_output")
    mean, var = gp.predict(gp.RBF(), post, Zs)
    A = rbf_gram(Z, Z, VAR, LS) + NOISE * np.eye(len(Z))
    Ks = rbf_gram(Zs, Z, VAR, LS)
    _, c = numpy_profile_lml(Z, Y)
    point = VAR - np.sum(Ks * np.linalg.solve(A, Ks.T).T, axis=1) + NOISE
    np.testing.assert_allclose(mean, Ks @ np.linalg.solve(A, Y), rtol=1e-9)
    assert var.shape == (4, 6)
    np.testing.assert_allclose(var, point[:, None] * c[None, :], rtol=1e-9)
    _, latent = gp.predict(gp.RBF(), post, Zs, include_noise=False)
    np.testing.assert_allclose(latent, (point - NOISE)[:, None] * c[None, :], rtol=1e-8)


def test_samples_have_each_outputs_variance():
    Z, Y = scaled_problem()
    Zs = problem(n=3, seed=7)[0]
    post = gp.condition(gp.RBF(), PARAMS, Z, Y, output_scales="per_output")
    draws = np.asarray(gp.sample(gp.RBF(), post, Zs, jax.random.key(1), n_samples=3000))
    _, var = gp.predict(gp.RBF(), post, Zs)
    np.testing.assert_allclose(draws.var(0), var, rtol=0.15)  # the sample variance's SE is ~2.6%


@pytest.mark.slow  # long fits: each L-BFGS program compiles for seconds
def test_fit_and_batched_fit_agree_and_beat_the_shared_fit():
    Z, Y = scaled_problem(n=20, d=4)
    options = gp.FitOptions(max_steps=60, output_scales="per_output")
    single = gp.fit(gp.RBF(), Z, Y, options=options)
    batched = gp.fit_batched(gp.RBF(), np.stack([Z, Z]), np.stack([Y, Y]), options=options)
    np.testing.assert_allclose(np.asarray(batched.lml), float(single.lml), rtol=1e-9)
    shared = gp.fit(gp.RBF(), Z, Y, options=gp.FitOptions(max_steps=60))
    assert float(single.lml) > float(shared.lml)
    _, mean, var = gp.fit_predict_batched(gp.RBF(), Z[None], Y[None], Z[None, :3], options=options)
    assert mean.shape == (1, 3, 4) and var.shape == (1, 3, 4)


def test_a_zero_variance_output_is_a_clear_error_not_a_nan():
    Z, Y = scaled_problem()
    Y[:, 2] = 0.0  # e.g. a gene constant in this fold, after centring
    for call in (
        lambda: gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y, output_scales="per_output"),
        lambda: gp.fit(gp.RBF(), Z, Y, options=gp.FitOptions(output_scales="per_output")),
        lambda: gp.condition(gp.RBF(), PARAMS, Z, Y, output_scales="per_output"),
    ):
        with pytest.raises(InputError, match=r"1 output\(s\) of zero variance \(column 2\)"):
            call()
    with pytest.raises(InputError, match="column 2 of dataset 1"):
        gp.fit_batched(
            gp.RBF(), np.stack([Z, Z]), np.stack([Y + 1, Y]), options=gp.FitOptions(output_scales="per_output")
        )
    # Where no check runs (traced), the scale is floored: finite, never NaN.
    value = lml(gp.RBF(), PARAMS, jnp.asarray(Z), gp.prepare_targets(jnp.asarray(Y), output_scales="per_output")).value
    assert np.isfinite(float(value))


def test_misspelled_or_incompatible_options_are_named():
    Z, Y = scaled_problem()
    with pytest.raises(InputError, match=r"output_scales must be one of \('shared', 'per_output'\), got 'per_gene'"):
        gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y, output_scales="per_gene")
    with pytest.raises(InputError, match="output_scales must be one of"):
        gp.FitOptions(output_scales="pergene")
    with pytest.raises(InputError, match="takes the direct path"):
        gp.FitOptions(output_scales="per_output", path="gram")
    with pytest.raises(InputError, match="not 'gram'"):
        gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y, path="gram", output_scales="per_output")


def test_memory_estimate_counts_the_direct_path():
    assert gp_peak_bytes(1000, 8000, 10, np.float64, per_output=True) > gp_peak_bytes(1000, 8000, 10, np.float64)
    assert gp_peak_bytes(1000, 500, 10, np.float64, per_output=True) == gp_peak_bytes(1000, 500, 10, np.float64)


@pytest.mark.slow  # long fits: each L-BFGS program compiles for seconds
@pytest.mark.parametrize("stationary", [gp.RBF(), gp.Matern52()])
def test_kernels_that_contain_ridge_fit_like_any_kernel(stationary):
    """stationary + Linear contains Bayesian ridge: on data with a linear trend it beats the
    stationary kernel alone (its linear variance is a parameter like any other)."""
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(30, 3))
    Y = Z @ rng.normal(size=(3, 5)) * np.logspace(-1, 1, 5) + 0.05 * rng.normal(size=(30, 5))
    options = gp.FitOptions(max_steps=150, output_scales="per_output")
    summed = gp.fit(stationary + gp.Linear(), Z, Y, options=options)
    alone = gp.fit(stationary, Z, Y, options=options)
    assert bool(summed.converged) and float(summed.lml) > float(alone.lml)
    assert set(gp.params_to_values(stationary + gp.Linear(), summed.params)["kernel"][1]) == {"variance"}

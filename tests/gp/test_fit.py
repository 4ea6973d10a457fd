"""Fitting: hyperparameter recovery, both optimisers, vmap over datasets, the trace."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpllm import errors as gp_errors
from gpllm import gp
from gpllm.gp.fit import log_noise_ratio_prior
from gpllm.gp.objective import covariance

TRUE = {"variance": 1.5, "lengthscale": 1.2}
TRUE_NOISE = 0.1


def draw_from_gp(n, d, seed):
    """Y (n, d): d independent draws from the GP with known hyperparameters."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3))
    A = np.asarray(covariance(gp.RBF(), gp.params_from_values(gp.RBF(), TRUE, TRUE_NOISE), jnp.asarray(Z)))
    return Z, np.linalg.cholesky(A) @ rng.normal(size=(n, d))


@pytest.fixture(scope="module")
def sample():
    return draw_from_gp(n=250, d=40, seed=1)


@pytest.mark.slow
def test_lbfgs_recovers_known_hyperparameters(sample):
    Z, Y = sample
    result = gp.fit(gp.RBF(), Z, Y)
    got = gp.params_to_values(gp.RBF(), result.params)
    # 10,000 observed entries: the MLE sits within a few percent of the truth.
    np.testing.assert_allclose(got["kernel"]["variance"], TRUE["variance"], rtol=0.15)
    np.testing.assert_allclose(got["kernel"]["lengthscale"], TRUE["lengthscale"], rtol=0.1)
    np.testing.assert_allclose(got["noise"], TRUE_NOISE, rtol=0.1)
    assert bool(result.converged)
    trace = np.asarray(result.trace)
    steps = int(result.n_steps)
    assert np.all(np.isfinite(trace[: steps + 1])) and np.all(np.isnan(trace[steps + 1 :]))
    # L-BFGS's line search only accepts descent steps.
    assert np.all(np.diff(trace[: steps + 1]) >= -1e-12)
    np.testing.assert_allclose(trace[steps] * Y.size, float(result.lml), rtol=1e-12)


@pytest.mark.slow
def test_adam_reaches_the_same_optimum(sample):
    Z, Y = sample
    lbfgs = gp.fit(gp.RBF(), Z, Y)
    adam = gp.fit(gp.RBF(), Z, Y, options=gp.FitOptions(optimizer="adam", max_steps=600, learning_rate=0.05))
    np.testing.assert_allclose(float(adam.lml), float(lbfgs.lml), rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_batched_fit_equals_separate_fits(batch_size):
    """vmapped (batch_size >= B), mapped one at a time (1) or in groups (2 of 3)."""
    Z, Y = draw_from_gp(n=60, d=5, seed=3)
    Zb = np.stack([Z[:40], Z[20:], Z[10:50]])
    Yb = np.stack([Y[:40], Y[20:], Y[10:50]])
    batched = gp.fit_batched(gp.RBF(), Zb, Yb, options=gp.FitOptions(max_steps=100), batch_size=batch_size)
    assert batched.lml.shape == (3,)
    for i in range(3):
        single = gp.fit(gp.RBF(), Zb[i], Yb[i], options=gp.FitOptions(max_steps=100))
        np.testing.assert_allclose(float(batched.lml[i]), float(single.lml), rtol=1e-8)
        for a, b in zip(jax.tree.leaves(batched.params), jax.tree.leaves(single.params)):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_default_initialisation_is_data_aware():
    Z, Y = draw_from_gp(n=30, d=4, seed=4)
    p = gp.params_to_values(gp.RBF(), gp.init_params(gp.RBF(), jnp.asarray(Z), jnp.asarray(Y * 10)))
    total = np.mean(np.var(Y * 10, axis=0))
    np.testing.assert_allclose(p["kernel"]["variance"] + p["noise"], total, rtol=1e-10)
    assert p["noise"] < p["kernel"]["variance"]


@pytest.mark.slow
def test_float32_fit_stays_float32_and_agrees_with_float64():
    """optax's line search runs in float64 under x64; the model must stay in the data's dtype."""
    Z, Y = draw_from_gp(n=80, d=6, seed=5)
    single = gp.fit(gp.RBF(), Z.astype(np.float32), Y.astype(np.float32))
    double = gp.fit(gp.RBF(), Z, Y)
    assert single.lml.dtype == np.float32
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(single.params))
    np.testing.assert_allclose(float(single.lml), float(double.lml), rtol=1e-4)
    warm = gp.fit(gp.RBF(), Z.astype(np.float32), Y.astype(np.float32), params0=double.params)
    np.testing.assert_allclose(float(warm.lml), float(double.lml), rtol=1e-4)


@pytest.mark.slow
def test_fused_fit_and_predict_equals_fit_condition_predict():
    """fit_predict_batched is fit_batched, then condition and predict per dataset."""
    Z, Y = draw_from_gp(n=60, d=5, seed=4)
    Zb, Yb = np.stack([Z[:40], Z[20:]]), np.stack([Y[:40], Y[20:]])
    Z_new = np.stack([Z[40:47], Z[:7]])
    fits, mean, var = gp.fit_predict_batched(
        gp.RBF(), Zb, Yb, Z_new, options=gp.FitOptions(max_steps=50), include_noise=True
    )
    separate = gp.fit_batched(gp.RBF(), Zb, Yb, options=gp.FitOptions(max_steps=50))
    np.testing.assert_allclose(np.asarray(fits.lml), np.asarray(separate.lml), rtol=1e-12)
    for b in range(2):
        params = jax.tree.map(operator.itemgetter(b), separate.params)
        m, v = gp.predict(gp.RBF(), gp.condition(gp.RBF(), params, Zb[b], Yb[b]), Z_new[b], include_noise=True)
        np.testing.assert_allclose(np.asarray(mean[b]), np.asarray(m), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(var[b]), np.asarray(v), rtol=1e-9)


def test_fused_fit_and_predict_rejects_mismatched_new_inputs():
    Z, Y = draw_from_gp(n=20, d=2, seed=5)
    with pytest.raises(gp_errors.ShapeError, match="Z_new holds 1 datasets but Z holds 2"):
        gp.fit_predict_batched(gp.RBF(), np.stack([Z, Z]), np.stack([Y, Y]), Z[None, :3])
    with pytest.raises(gp_errors.ShapeError, match="Z_new must be 3-D"):
        gp.fit_predict_batched(gp.RBF(), np.stack([Z, Z]), np.stack([Y, Y]), Z[:3])


@pytest.mark.slow
def test_a_printed_result_is_readable():
    Z, Y = draw_from_gp(n=30, d=4, seed=3)
    result = gp.fit(gp.RBF(), Z, Y, options=gp.FitOptions(max_steps=50))
    text = repr(result)
    assert "nan" not in text.lower() and "converged=" in text and "n_steps=" in text
    values = gp.params_to_values(gp.RBF(), result.params)
    np.testing.assert_allclose(result.values.noise, values["noise"], rtol=1e-12)
    shown = float(format(float(values["noise"]), ".5g"))
    assert f"'noise': {shown}" in text
    assert len(result.lml_trace()) == int(result.n_steps) + 1 and np.all(np.isfinite(result.lml_trace()))


@pytest.mark.slow  # long fits: each L-BFGS program compiles for seconds
def test_a_noise_ratio_prior_makes_the_fit_map_and_pulls_a_flat_noise_to_its_mean():
    """Noise-free draws: ML-II drives r = s2 / k(z, z) far below 1e-3 (interpolation); a prior on
    log r centred at 0.1 moves it there, at a cost in LML the prior outweighs."""
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(30, 2))
    Y = np.sin(Z @ rng.normal(size=(2, 4)))
    options = gp.FitOptions(max_steps=150)
    ml = gp.fit(gp.RBF(), Z, Y, options=options)
    prior = (np.log(0.1), 0.05)
    map_ = gp.fit(gp.RBF(), Z, Y, options=gp.FitOptions(max_steps=150, noise_ratio_prior=prior))

    def ratio(fit: gp.FitResult) -> float:
        return float(fit.values.noise / fit.values.kernel["variance"])

    assert ratio(ml) < 1e-3
    np.testing.assert_allclose(ratio(map_), 0.1, rtol=0.2)
    assert float(map_.lml) < float(ml.lml)  # lml stays the likelihood; the trace holds the MAP objective
    objective = float(map_.lml) + log_noise_ratio_prior(gp.RBF(), map_.params, jnp.asarray(Z), prior)
    np.testing.assert_allclose(map_.lml_trace()[-1] * Y.size, float(objective), rtol=1e-9)


@pytest.mark.parametrize("prior", [(0.0,), (0.0, 0.0), (0.0, float("nan"))])
def test_a_malformed_noise_ratio_prior_is_named(prior):
    with pytest.raises(gp_errors.InputError, match="noise_ratio_prior must be"):
        gp.FitOptions(noise_ratio_prior=prior)

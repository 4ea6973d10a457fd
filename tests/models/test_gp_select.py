"""gp_select: the kernel chosen per fit by LOO density, checked against NumPy refits without each point."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest
from scipy.stats import norm

from gpllm.errors import InputError
from gpllm.gp.kernels import RBF, Linear
from gpllm.gp.objective import values_of
from gpllm.models.base import Fold, HeldOut
from gpllm.models.gp import GPModel
from gpllm.models.gp_select import LOOSelectedGP, loo_nll, rbf_or_rbf_linear
from gpllm.models.registry import BuildContext, ModelSpec


@pytest.fixture(scope="module")
def data():
    """A linear trend plus a bump, small enough for NumPy refits without each point."""
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(36, 3))
    Y = Z @ rng.normal(size=(3, 4)) + np.exp(-np.sum(Z**2, axis=1, keepdims=True)) + 0.3 * rng.normal(size=(36, 4))
    return Z[:28], Y[:28], Z[28:]


@pytest.fixture(scope="module")
def fitted(data):
    Z, Y, _ = data
    model = rbf_or_rbf_linear()
    return model, model.fit(Z, Y)


def _gram(kernel, values, Z):
    """The kernel matrix in NumPy, from the constrained values, for RBF and RBF + Linear."""
    rbf = values if isinstance(kernel, RBF) else values[0]
    r2 = np.sum((Z[:, None, :] - Z[None, :, :]) ** 2, axis=-1)
    K = float(rbf["variance"]) * np.exp(-0.5 * r2 / float(rbf["lengthscale"]) ** 2)
    return K if isinstance(kernel, RBF) else K + float(values[1]["variance"]) * Z @ Z.T


def _numpy_loo_nll(candidate: GPModel, state, Z, Y) -> float:
    """Refit without point i (hyperparameters and per-gene scales c_g held, the offset
    re-estimated), score y_i under N(mu_{-i}, c_g v_{-i}); mean over all entries."""
    values = values_of(candidate.kernel, state.posterior.params)
    A = _gram(candidate.kernel, values.kernel, Z) + float(values.noise) * np.eye(len(Z))
    Yc = Y - Y.mean(axis=0)
    scales = np.einsum("ng,ng->g", Yc, np.linalg.solve(A, Yc)) / len(Z)  # c_g = y_g^T A^-1 y_g / N
    logpdf = []
    for i in range(len(Z)):
        rest = np.arange(len(Z)) != i
        offset = Y[rest].mean(axis=0)
        weights = np.linalg.solve(A[np.ix_(rest, rest)], A[rest, i])
        mean = offset + weights @ (Y[rest] - offset)
        var = A[i, i] - A[rest, i] @ weights
        logpdf.append(norm.logpdf(Y[i], mean, np.sqrt(scales * var)))
    return -float(np.mean(logpdf))


def test_each_candidates_loo_nll_equals_numpy_refits_and_the_lower_one_is_kept(data, fitted):
    Z, Y, _ = data
    model, state = fitted
    inner = [c.fit(Z, Y) for c in model.candidates]
    expected = [_numpy_loo_nll(c, s, Z, Y) for c, s in zip(model.candidates, inner)]
    np.testing.assert_allclose(state.scores, expected, rtol=1e-8)
    assert state.choice == int(np.argmin(expected))


def test_loo_nll_is_the_mean_gaussian_log_density_and_never_chooses_a_fit_that_cannot_score():
    rng = np.random.default_rng(0)
    residual, var = rng.normal(size=(7, 3)), rng.uniform(0.5, 2.0, size=7)
    expected = -np.mean(norm.logpdf(residual, 0.0, np.sqrt(var)[:, None]))
    assert loo_nll(HeldOut(residual, var)) == pytest.approx(expected, rel=1e-12)
    assert loo_nll(HeldOut(residual, np.zeros(7))) == np.inf
    assert loo_nll(HeldOut(residual * np.nan, var)) == np.inf


@pytest.mark.slow  # two batched GP fits per fold: a long fit
def test_the_folds_program_chooses_and_predicts_as_fit_per_fold(data, fitted):
    Z, Y, Z_test = data
    model, _ = fitted
    folds = [Fold(Z[:20], Y[:20], Z_test), Fold(Z[8:], Y[8:], Z_test[:5])]
    fits = model.fit_predict_folds(folds)
    for fold, fit in zip(folds, fits):
        state = model.fit(fold.Z_train, fold.Y_train)
        assert fit.record["kernel_choice"] == model.candidates[state.choice].name
        np.testing.assert_allclose(list(fit.record["loo_nll"].values()), state.scores, rtol=1e-6)
        expected = model.predict(state, fold.Z_test)
        np.testing.assert_allclose(fit.prediction.mean, expected.mean, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(fit.prediction.var, expected.var, rtol=1e-6)


def test_a_record_restores_the_chosen_candidate_and_its_predictions(data, fitted):
    Z, Y, Z_test = data
    model, state = fitted
    record = model.record(state)
    restored = model.restore(MappingProxyType(record), Z, Y)  # as a fitted-model file hands it back
    assert restored.choice == state.choice
    before, after = model.predict(state, Z_test), model.predict(restored, Z_test)
    np.testing.assert_allclose(after.mean, before.mean, rtol=1e-10)
    np.testing.assert_allclose(after.var, before.var, rtol=1e-10)
    with pytest.raises(InputError, match="kernel_choice.*'matern'"):
        model.restore({**record, "kernel_choice": "matern"}, Z, Y)


def test_candidates_must_be_gp_models_with_distinct_names():
    with pytest.raises(InputError, match="distinct"):
        LOOSelectedGP((GPModel(name="a"), GPModel(kernel=RBF() + Linear(), name="a")))
    with pytest.raises(InputError, match="GPModels"):
        LOOSelectedGP(())


def test_the_built_in_is_gp_scaled_on_rbf_and_on_rbf_plus_linear():
    model = ModelSpec("gp_select").build(BuildContext(gp_dtype="float32"))
    assert [c.name for c in model.candidates] == ["rbf", "rbf+linear"]
    assert [c.kernel for c in model.candidates] == [RBF(), RBF() + Linear()]
    scaled = ModelSpec("gp_scaled").build(BuildContext(gp_dtype="float32"))
    assert all(c.options == scaled.options and c.dtype == "float32" for c in model.candidates)

"""Every model's predictive variance and leave-one-out (``heldout``) predictions, against
independent NumPy / scikit-learn computations and brute-force refits without each point."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge as SkRidge

from gpllm.gp.fit import FitOptions
from gpllm.models import base
from gpllm.models.baselines import Control, NonControlMean, RandomPerturbation
from gpllm.models.gp import GPModel
from gpllm.models.knn import KNN
from gpllm.models.ridge import Ridge

TIGHT = {"rtol": 1e-9, "atol": 1e-11}


def _data(n=25, q=3, g=5, m=6, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n + m, q))
    Y = np.tanh(Z @ rng.normal(size=(q, g))) + 0.3 * rng.normal(size=(n + m, g)) + 2.0
    return Z[:n], Y[:n], Z[n:]


def _var(prediction) -> np.ndarray:
    return np.asarray(base.variance_per_gene(prediction))


def _loo_refits(model, Z, Y):
    """For each i: the prediction at z_i of ``model`` fitted without point i, (mean (N, G), var (N, G))."""
    means, variances = [], []
    for i in range(len(Z)):
        keep = np.arange(len(Z)) != i
        pred = model.predict(model.fit(Z[keep], Y[keep]), Z[i : i + 1])
        means.append(np.asarray(pred.mean)[0])
        variances.append(_var(pred)[0])
    return np.array(means), np.array(variances)


def _heldout(model, Z, Y):
    held = base.heldout_of(model, model.fit(Z, Y), Z, Y)
    residual = np.asarray(held.residual)
    return residual, np.broadcast_to(np.asarray(held.var).reshape(len(Z), -1), residual.shape)


# ------------------------------------------------------------------ baselines


def test_non_control_mean_variance_is_the_spread_of_the_training_profiles():
    Z, Y, Zt = _data()
    pred = NonControlMean().predict(NonControlMean().fit(Z, Y), Zt)
    want = np.var(Y, axis=0, ddof=1) * (1 + 1 / len(Y))
    np.testing.assert_allclose(_var(pred), np.tile(want, (len(Zt), 1)), **TIGHT)


def test_random_perturbation_variance_is_that_of_a_difference_of_two_draws():
    Z, Y, Zt = _data()
    pred = RandomPerturbation(seed=1).predict(RandomPerturbation(seed=1).fit(Z, Y), Zt)
    # Var(y_a - y_b) over all ordered pairs a != b of training profiles equals 2 s2 (ddof 1).
    diffs = (Y[:, None, :] - Y[None, :, :])[~np.eye(len(Y), dtype=bool)]
    np.testing.assert_allclose(_var(pred)[0], np.mean(diffs**2, axis=0), **TIGHT)


def test_control_variance_is_the_mean_squared_training_delta():
    Z, Y, Zt = _data()
    ctrl = np.linspace(1.5, 2.5, Y.shape[1])
    pred = Control(ctrl).predict(Control(ctrl).fit(Z, Y), Zt)
    np.testing.assert_allclose(_var(pred), np.tile(((Y - ctrl) ** 2).mean(axis=0), (len(Zt), 1)), **TIGHT)


@pytest.mark.parametrize(
    "model", [NonControlMean(), Control(np.linspace(1.5, 2.5, 5))], ids=["nonctrl_mean", "control"]
)
def test_baseline_heldout_equals_refits_without_each_point(model):
    Z, Y, _ = _data()
    residual, var = _heldout(model, Z, Y)
    mean_loo, var_loo = _loo_refits(model, Z, Y)
    np.testing.assert_allclose(residual, Y - mean_loo, **TIGHT)
    np.testing.assert_allclose(var, var_loo, **TIGHT)


def test_random_perturbation_heldout_draws_another_point_with_the_refits_variance():
    Z, Y, _ = _data()
    model = RandomPerturbation(seed=4)
    residual, var = _heldout(model, Z, Y)
    drawn = Y - residual
    match = (np.abs(drawn[:, None, :] - Y[None, :, :]) < 1e-12).all(axis=2)  # (i, j): i drew j
    assert (match.sum(axis=1) == 1).all() and not match[np.eye(len(Y), dtype=bool)].any()
    np.testing.assert_allclose(var, _loo_refits(model, Z, Y)[1], **TIGHT)


def test_mean_baselines_need_two_points_for_a_variance():
    with pytest.raises(Exception, match="at least 2"):
        NonControlMean().fit(np.zeros((1, 2)), np.ones((1, 3)))
    Z, Y = np.zeros((2, 2)), np.ones((2, 3))
    assert NonControlMean().heldout(NonControlMean().fit(Z, Y), Z, Y) is None


# ---------------------------------------------------------------------- ridge


def _bayesian_ridge_reference(Z, Y, Zt, lam):
    """Explicit hat matrix: X = [1, Zc], Lam = diag(0, lam I), s2 = mean_i e_i^2 / (1 - H_ii),
    var = s2 (1 + x (X^T X + Lam)^+ x^T)."""
    z_bar = Z.mean(axis=0)
    X = np.hstack([np.ones((len(Z), 1)), Z - z_bar])
    Lam = np.diag([0.0] + [lam] * Z.shape[1])
    M = np.linalg.pinv(X.T @ X + Lam)
    H = X @ M @ X.T
    e = Y - H @ Y
    s2 = np.mean(e**2 / (1 - np.diag(H))[:, None], axis=0)
    Xt = np.hstack([np.ones((len(Zt), 1)), Zt - z_bar])
    h = np.einsum("mi,ij,mj->m", Xt, M, Xt)
    return s2[None, :] * (1 + h)[:, None]


@pytest.mark.parametrize("n, q, lam", [(25, 3, 0.7), (25, 3, 0.0), (8, 12, 2.0)], ids=["ridge", "ols", "n<q"])
def test_ridge_variance_is_the_bayesian_ridge_predictive(n, q, lam):
    Z, Y, Zt = _data(n=n, q=q)
    model = Ridge(lam=lam)
    pred = model.predict(model.fit(Z, Y), Zt)
    np.testing.assert_allclose(_var(pred), _bayesian_ridge_reference(Z, Y, Zt, lam), rtol=1e-8)


def test_ridge_with_a_tuned_penalty_uses_the_chosen_one():
    Z, Y, Zt = _data()
    state = Ridge(lam="loo").fit(Z, Y)
    got = _var(Ridge(lam="loo").predict(state, Zt))
    np.testing.assert_allclose(got, _bayesian_ridge_reference(Z, Y, Zt, float(state.lam)), rtol=1e-8)


@pytest.mark.parametrize("n, q, lam", [(25, 3, 0.7), (8, 12, 2.0)], ids=["n>q", "n<q"])
def test_ridge_heldout_equals_refits_without_each_point(n, q, lam):
    """Residuals: scikit-learn refits without i. Variances: s2 held fixed, times 1 + the
    refit's leverage of z_i (the refit's variance over its own s2)."""
    Z, Y, _ = _data(n=n, q=q)
    model = Ridge(lam=lam)
    state = model.fit(Z, Y)
    residual, var = _heldout(model, Z, Y)
    for i in range(n):
        keep = np.arange(n) != i
        sk = SkRidge(alpha=lam).fit(Z[keep], Y[keep])
        np.testing.assert_allclose(residual[i], Y[i] - sk.predict(Z[i : i + 1])[0], rtol=1e-8, atol=1e-10)
        refit = model.fit(Z[keep], Y[keep])
        one_plus_h = _var(model.predict(refit, Z[i : i + 1]))[0] / np.asarray(refit.noise_var)
        np.testing.assert_allclose(var[i], np.asarray(state.noise_var) * one_plus_h, rtol=1e-8)
    # s2 was estimated from these very residuals: the recalibration factor is exactly 1.
    np.testing.assert_allclose(np.mean(residual**2 / var), 1.0, rtol=1e-10)


# ------------------------------------------------------------------------ kNN


def _neighbours(Zq, Z, k, exclude_self=False):
    D = ((Zq[:, None, :] - Z[None, :, :]) ** 2).sum(axis=2)
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    return np.argsort(D, axis=1, kind="stable")[:, :k]


def _knn_reference(Z, Y, Zt, k):
    """s2_g: mean squared LOO error per gene; c(z) = mean_g t2_g(z) (1 + 1/k) / s2_g."""
    loo = _neighbours(Z, Z, k, exclude_self=True)
    s2 = np.mean((Y - Y[loo].mean(axis=1)) ** 2, axis=0)
    nb = Y[_neighbours(Zt, Z, k)]  # (M, k, G)
    c = (np.var(nb, axis=1, ddof=1) * (1 + 1 / k) / s2).mean(axis=1) if k > 1 else np.ones(len(Zt))
    return nb.mean(axis=1), s2[None, :] * c[:, None]


@pytest.mark.parametrize("k", [1, 2, 5])
def test_knn_variance_from_the_neighbours_spread(k):
    Z, Y, Zt = _data()
    pred = KNN(k=k).predict(KNN(k=k).fit(Z, Y), Zt)
    mean, var = _knn_reference(Z, Y, Zt, k)
    np.testing.assert_allclose(np.asarray(pred.mean), mean, **TIGHT)
    np.testing.assert_allclose(_var(pred), var, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("k", [1, 3])
def test_knn_heldout_predicts_each_point_from_its_k_nearest_others(k):
    Z, Y, _ = _data()
    model = KNN(k=k)
    state = model.fit(Z, Y)
    residual, var = _heldout(model, Z, Y)
    np.testing.assert_allclose(residual, Y - _loo_refits(model, Z, Y)[0], **TIGHT)
    # The variance with s2 held at the full fit's: the same formula over i's k nearest others.
    nb = Y[_neighbours(Z, Z, k, exclude_self=True)]
    s2 = np.asarray(state.loo_var)
    c = (np.var(nb, axis=1, ddof=1) * (1 + 1 / k) / s2).mean(axis=1) if k > 1 else np.ones(len(Z))
    np.testing.assert_allclose(var, s2[None, :] * c[:, None], rtol=1e-9)
    if k == 1:  # s2 is the mean of these squared residuals: the recalibration factor is 1
        np.testing.assert_allclose(np.mean(residual**2 / var), 1.0, rtol=1e-10)


# ------------------------------------------------------------------------- GP


@pytest.mark.slow
@pytest.mark.parametrize("center", [True, False])
def test_gp_heldout_equals_reconditioning_without_each_point(center):
    """Hyperparameters held; the offset (training mean) re-estimated without i."""
    Z, Y, _ = _data(n=15)
    model = GPModel(center=center)
    state = model.condition(model.fresh_start(Z, Y), Z, Y)  # any hyperparameters will do
    held = model.heldout(state, Z, Y)
    residual, var = np.asarray(held.residual), np.asarray(held.var)
    for i in range(len(Z)):
        keep = np.arange(len(Z)) != i
        refit = model.condition(state.posterior.params, Z[keep], Y[keep])
        pred = model.predict(refit, Z[i : i + 1])
        np.testing.assert_allclose(residual[i], Y[i] - np.asarray(pred.mean)[0], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(var[i], np.asarray(pred.var)[0], rtol=1e-7)


@pytest.mark.slow
def test_batched_folds_carry_the_same_heldout_as_single_fits():
    folds = [base.Fold(*_data(n=15, seed=s)) for s in (1, 2)]
    model = GPModel(options=FitOptions(max_steps=3))
    for fold, fit in zip(folds, model.fit_predict_folds(folds)):
        state = model.condition(model.params_from_record(fit.record, fold.Z_train), fold.Z_train, fold.Y_train)
        want = model.heldout(state, fold.Z_train, fold.Y_train)
        np.testing.assert_allclose(np.asarray(fit.heldout.residual), np.asarray(want.residual), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.asarray(fit.heldout.var), np.asarray(want.var), rtol=1e-9)


# ------------------------------------------------------------- every model


def test_variances_are_positive_even_for_a_constant_gene():
    Z, Y, Zt = _data()
    Y = Y.copy()
    Y[:, 0] = 1.0
    for model in (NonControlMean(), RandomPerturbation(), Control(np.ones(5)), KNN(k=3), KNN(k=1), Ridge(lam=0.5)):
        state = model.fit(Z, Y)
        assert (_var(model.predict(state, Zt)) > 0).all(), model
        assert (np.asarray(base.heldout_of(model, state, Z, Y).var) > 0).all(), model

"""Ridge against scikit-learn and brute-force leave-one-out refits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.linear_model import Ridge as SkRidge

from gpllm.errors import InputError
from gpllm.models.ridge import DEFAULT_GRID, Ridge

# (n, q): more perturbations than embedding dimensions, and fewer (the SVD path).
SHAPES = [(30, 4), (8, 12)]


def _closed_form(Z, Y, lam):
    """Ridge with intercept by the normal equations, in float64."""
    zb, yb = Z.mean(0), Y.mean(0)
    Zc, Yc = Z - zb, Y - yb
    W = np.linalg.solve(Zc.T @ Zc + lam * np.eye(Z.shape[1]), Zc.T @ Yc)
    return W, yb - zb @ W


def _brute_force_loo(Z, Y, lam):
    """Mean squared error over all entries of refits that each leave one point out."""
    errs = []
    for i in range(len(Z)):
        keep = np.arange(len(Z)) != i
        W, b = _closed_form(Z[keep], Y[keep], lam)
        errs.append((Y[i] - Z[i] @ W - b) ** 2)
    return np.mean(errs)


def _abs_grid(Z, rel):
    Zc = Z - Z.mean(0)
    return np.sum(Zc**2) / Z.shape[1] * np.asarray(rel)


@pytest.mark.parametrize("n,q", SHAPES)
def test_fixed_penalty_matches_sklearn_ridge(n, q, make_data, dtype, tol):
    Z, Y, Zt = make_data(n=n, q=q, dtype=dtype)
    model = Ridge(lam=0.7)
    state = model.fit(Z, Y)
    ref = SkRidge(alpha=0.7, solver="svd").fit(Z.astype(float), Y.astype(float))
    np.testing.assert_allclose(np.asarray(state.W), ref.coef_.T, **tol)
    np.testing.assert_allclose(np.asarray(state.b), ref.intercept_, **tol)
    pred = model.predict(state, Zt)
    assert pred.var.dtype == dtype and pred.mean.dtype == dtype
    np.testing.assert_allclose(np.asarray(pred.mean), ref.predict(Zt.astype(float)), **tol)


@pytest.mark.parametrize("n,q", SHAPES)
def test_loo_scores_match_brute_force_refits(n, q, make_data):
    Z, Y, _ = make_data(n=n, q=q)
    rel = (1e-3, 0.1, 10.0)
    state = Ridge(lam="loo", grid=rel).fit(Z, Y)
    lams = _abs_grid(Z, rel)
    np.testing.assert_allclose(np.asarray(state.lam_grid), lams, rtol=1e-12)
    ref = [_brute_force_loo(Z, Y, lam) for lam in lams]
    np.testing.assert_allclose(np.asarray(state.cv_mse), ref, rtol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("n,q", SHAPES)
def test_loo_choice_matches_sklearn_ridgecv(n, q, make_data, dtype, tol):
    Z, Y, Zt = make_data(n=n, q=q, dtype=dtype)
    # From 1e-2 up: with N < Q and lam -> 0, 1 - H_ii -> 0 and the float32 LOO
    # score loses digits (relative error ~ eps / (1 - H_ii)), not a defect.
    rel = tuple(np.logspace(-2, 3, 11))
    state = Ridge(lam="loo", grid=rel).fit(Z, Y)
    Z64, Y64 = Z.astype(float), Y.astype(float)
    # sklearn's alpha is our absolute lam: both minimise |Yc - Zc W|^2 + lam |W|^2.
    ref = RidgeCV(alphas=_abs_grid(Z64, rel), store_cv_results=True).fit(Z64, Y64)
    # cv_results_: (n, G, n_alphas) squared LOO errors.
    np.testing.assert_allclose(np.asarray(state.cv_mse), ref.cv_results_.mean(axis=(0, 1)), **tol)
    np.testing.assert_allclose(float(state.lam), ref.alpha_, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(state.W), ref.coef_.T, **tol)
    np.testing.assert_allclose(
        np.asarray(Ridge(lam="loo", grid=rel).predict(state, Zt).mean), ref.predict(Zt.astype(float)), **tol
    )


def test_gcv_matches_explicit_hat_matrix(make_data):
    Z, Y, _ = make_data(n=20, q=5)
    rel = (1e-2, 1.0, 100.0)
    state = Ridge(lam="gcv", grid=rel).fit(Z, Y)
    Zc = Z - Z.mean(0)
    n = len(Z)
    ref = []
    for lam in _abs_grid(Z, rel):
        H = np.ones((n, n)) / n + Zc @ np.linalg.solve(Zc.T @ Zc + lam * np.eye(5), Zc.T)
        resid = Y - H @ Y
        ref.append(np.mean(resid**2) / (1 - np.trace(H) / n) ** 2)
    np.testing.assert_allclose(np.asarray(state.cv_mse), ref, rtol=1e-10)
    assert float(state.lam) == pytest.approx(_abs_grid(Z, rel)[int(np.argmin(ref))])


def test_zero_penalty_is_least_squares(make_data, dtype, tol):
    Z, Y, Zt = make_data(dtype=dtype)
    model = Ridge(lam=0.0)
    assert model.name == "linear"
    ref = LinearRegression().fit(Z.astype(float), Y.astype(float))
    pred = model.predict(model.fit(Z, Y), Zt).mean
    np.testing.assert_allclose(np.asarray(pred), ref.predict(Zt.astype(float)), **tol)


def test_zero_penalty_with_rank_deficient_inputs_is_the_minimum_norm_solution(make_data):
    Z, Y, Zt = make_data(n=6, q=3)
    Z = np.hstack([Z, Z[:, :1]])  # a repeated column: Zc^T Zc is singular
    Zt = np.hstack([Zt, Zt[:, :1]])
    state = Ridge(lam=0.0).fit(Z, Y)
    Zc, Yc = Z - Z.mean(0), Y - Y.mean(0)
    W = np.linalg.pinv(Zc) @ Yc
    assert np.all(np.isfinite(np.asarray(state.W)))
    np.testing.assert_allclose(np.asarray(state.W), W, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(np.asarray(state.W[0]), np.asarray(state.W[3]), rtol=1e-8)


def test_huge_penalty_predicts_the_training_mean(make_data):
    Z, Y, Zt = make_data()
    model = Ridge(lam=1e12)
    pred = model.predict(model.fit(Z, Y), Zt).mean
    np.testing.assert_allclose(np.asarray(pred), np.broadcast_to(Y.mean(0), pred.shape), atol=1e-8)


@pytest.mark.slow
def test_constant_embeddings_give_the_training_mean_without_nan():
    Z = np.ones((5, 3))
    Y = np.arange(20.0).reshape(5, 4)
    for lam in ("loo", "gcv", 0.0):
        model = Ridge(lam=lam)
        pred = np.asarray(model.predict(model.fit(Z, Y), np.ones((2, 3))).mean)
        np.testing.assert_allclose(pred, np.broadcast_to(Y.mean(0), (2, 4)))


def test_names_and_hashing():
    assert Ridge() == Ridge(lam="loo", grid=DEFAULT_GRID)
    assert hash(Ridge(grid=(2.0, 1.0))) == hash(Ridge(grid=(1.0, 2.0)))
    assert len({Ridge().name, Ridge("gcv").name, Ridge(0).name, Ridge(1.5).name}) == 4


@pytest.mark.parametrize(
    "kwargs", [{"lam": -1.0}, {"lam": "cv"}, {"lam": float("nan")}, {"grid": ()}, {"grid": (0.0, 1.0)}]
)
def test_bad_config_raises(kwargs):
    with pytest.raises(InputError):
        Ridge(**kwargs)


def test_tuning_needs_two_points():
    with pytest.raises(InputError, match="at least 2"):
        Ridge().fit(np.ones((1, 2)), np.ones((1, 3)))

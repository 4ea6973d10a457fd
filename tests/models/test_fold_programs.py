"""The non-GP models' folds at once (one compiled program per training size, predictions on test
rows padded to a bucket) against independent references: scikit-learn and NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge as SkRidge
from sklearn.neighbors import KNeighborsRegressor

from gpllm.models.base import Fold, fit_predict_folds
from gpllm.models.baselines import Control, NonControlMean, RandomPerturbation
from gpllm.models.knn import KNN
from gpllm.models.padding import ROW_BUCKET
from gpllm.models.ridge import Ridge


def _folds(rng, sizes=(12, 9), test_rows=(5, ROW_BUCKET + 3)):
    """Folds whose test rows are not a multiple of the bucket (so predictions are padded)."""
    return [
        Fold(rng.normal(size=(n, 3)), rng.normal(size=(n, 4)), rng.normal(size=(m, 3)))
        for n, m in zip(sizes, test_rows)
    ]


def test_knn_folds_predict_the_mean_of_the_nearest_training_profiles():
    rng = np.random.default_rng(0)
    for fold, fit in zip(folds := _folds(rng), KNN(k=3).fit_predict_folds(folds)):
        want = KNeighborsRegressor(n_neighbors=3).fit(fold.Z_train, fold.Y_train).predict(fold.Z_test)
        np.testing.assert_allclose(np.asarray(fit.prediction.mean), want, rtol=1e-12)
        assert np.shape(fit.prediction.var) == want.shape


def test_ridge_folds_match_sklearn_and_exact_leave_one_out_refits():
    rng = np.random.default_rng(1)
    model = Ridge(lam=0.7)
    for fold, fit in zip(folds := _folds(rng), model.fit_predict_folds(folds)):
        Z, Y = fold.Z_train, fold.Y_train
        want = SkRidge(alpha=0.7).fit(Z, Y).predict(fold.Z_test)
        np.testing.assert_allclose(np.asarray(fit.prediction.mean), want, rtol=1e-10)
        assert fit.record == {"lam": 0.7}
        keep = np.ones(len(Z), bool)
        for i in range(len(Z)):
            keep[:] = True
            keep[i] = False
            refit = SkRidge(alpha=0.7).fit(Z[keep], Y[keep]).predict(Z[i : i + 1])[0]
            np.testing.assert_allclose(np.asarray(fit.heldout.residual)[i], Y[i] - refit, rtol=1e-9, atol=1e-12)


def test_baseline_folds_match_numpy():
    rng = np.random.default_rng(2)
    folds = _folds(rng)
    ctrl = rng.normal(size=4)
    for model in (NonControlMean(), Control(ctrl), RandomPerturbation(seed=3)):
        for fold, fit in zip(folds, fit_predict_folds(model, folds)):
            Y, n, m = fold.Y_train, len(fold.Y_train), len(fold.Z_test)
            mean, var = np.asarray(fit.prediction.mean), np.asarray(fit.prediction.var)
            assert mean.shape == var.shape == (m, 4)
            if isinstance(model, NonControlMean):
                np.testing.assert_allclose(mean, np.tile(Y.mean(axis=0), (m, 1)), rtol=1e-13)
                np.testing.assert_allclose(var[0], Y.var(axis=0, ddof=1) * (1 + 1 / n), rtol=1e-12)
                others = (Y.sum(axis=0) - Y) / (n - 1)
                np.testing.assert_allclose(np.asarray(fit.heldout.residual), Y - others, rtol=1e-12, atol=1e-14)
            elif isinstance(model, Control):
                np.testing.assert_allclose(mean, np.tile(ctrl, (m, 1)), rtol=0)
                np.testing.assert_allclose(var[0], ((Y - ctrl) ** 2).mean(axis=0), rtol=1e-12)
            else:
                # every predicted row is a training row, drawn as the model's own predict draws it
                assert all(np.any(np.all(row == Y, axis=1)) for row in mean)
                state = model.fit(fold.Z_train, fold.Y_train)
                np.testing.assert_array_equal(mean, np.asarray(model.predict(state, fold.Z_test).mean))
                np.testing.assert_allclose(var[0], 2 * Y.var(axis=0, ddof=1), rtol=1e-12)
                # held out, point i is predicted by another training row j != i
                residual = np.asarray(fit.heldout.residual)
                for i in range(n):
                    others = [j for j in range(n) if j != i]
                    assert np.any(np.all(np.isclose(residual[i], Y[i] - Y[others], rtol=0, atol=0), axis=1))


@pytest.mark.parametrize("model", [NonControlMean(), RandomPerturbation()])
def test_baseline_folds_too_small_for_leave_one_out_have_no_heldout(model):
    rng = np.random.default_rng(5)
    [fit] = fit_predict_folds(model, [Fold(rng.normal(size=(2, 1)), rng.normal(size=(2, 3)), rng.normal(size=(4, 1)))])
    assert fit.heldout is None and np.shape(fit.prediction.mean) == (4, 3)

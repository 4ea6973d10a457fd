"""kNN's folds at once: the fit's neighbour pass also gives the held-out predictions, unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from gpllm.models.base import Fold, heldout_of
from gpllm.models.knn import KNN


@pytest.mark.parametrize(
    "model",
    [KNN(k="tune", k_grid=(1, 2, 5))]
    + [pytest.param(m, marks=pytest.mark.slow) for m in (KNN(k=1), KNN(k=3), KNN(k=2, metric="cosine"))],
)
def test_folds_at_once_equal_fit_heldout_and_predict(model):
    """The same arithmetic as separate calls; one compiled program may fuse it differently
    (seen: 1 ulp in a held-out variance at these tiny shapes; none at the sweep's)."""
    rng = np.random.default_rng(3)
    folds = [Fold(rng.normal(size=(n, 4)), rng.normal(size=(n, 6)), rng.normal(size=(5, 4))) for n in (12, 9)]
    fits = model.fit_predict_folds(folds)
    for fold, fit in zip(folds, fits):
        state = model.fit(fold.Z_train, fold.Y_train)
        pred = model.predict(state, fold.Z_test)
        heldout = heldout_of(model, state, fold.Z_train, fold.Y_train)
        assert fit.record == model.record(state)
        for got, want in ((fit.prediction, pred), (fit.heldout, heldout)):
            for a, b in zip(got, want):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14, atol=0)


def test_folds_without_a_leave_one_out_have_no_heldout():
    """k = N: no point has N other neighbours, so no held-out predictions (as ``heldout``)."""
    rng = np.random.default_rng(4)
    fold = Fold(rng.normal(size=(4, 2)), rng.normal(size=(4, 3)), rng.normal(size=(2, 2)))
    [fit] = KNN(k=4).fit_predict_folds([fold])
    assert fit.heldout is None and fit.prediction.mean.shape == (2, 3)

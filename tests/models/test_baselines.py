"""The three simple baselines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from gpllm.errors import InputError, NonFiniteError, ShapeError
from gpllm.models.baselines import Control, NonControlMean, RandomPerturbation


def _row_indices(pred, Y):
    """For each predicted row, the index of the identical training row (or -1)."""
    pred, Y = np.asarray(pred), np.asarray(Y)
    match = (pred[:, None, :] == Y[None, :, :]).all(axis=2)
    return np.where(match.any(axis=1), match.argmax(axis=1), -1)


def test_random_perturbation_predicts_training_rows(make_data, dtype):
    Z, Y, Zt = make_data(dtype=dtype)
    model = RandomPerturbation(seed=3)
    pred = model.predict(model.fit(Z, Y), Zt)
    assert pred.var.dtype == dtype and pred.mean.shape == (len(Zt), Y.shape[1]) and pred.mean.dtype == dtype
    assert (_row_indices(pred.mean, Y) >= 0).all()


def test_random_perturbation_is_reproducible_prefix_stable_and_seed_dependent(make_data):
    Z, Y, _ = make_data(n=50)
    Zt = np.zeros((40, Z.shape[1]))

    def draw(seed: int, m: int) -> np.ndarray:
        return np.asarray(RandomPerturbation(seed).predict(RandomPerturbation(seed).fit(Z, Y), Zt[:m]).mean)

    np.testing.assert_array_equal(draw(0, 40), draw(0, 40))
    np.testing.assert_array_equal(draw(0, 40)[:7], draw(0, 7))  # a row's draw ignores M
    assert not np.array_equal(_row_indices(draw(0, 40), Y), _row_indices(draw(1, 40), Y))


def test_random_perturbation_draws_are_uniform_and_vary_across_test_points():
    Y = np.arange(5.0)[:, None] * np.ones((1, 3))
    model = RandomPerturbation(seed=0)
    pred = model.predict(model.fit(np.zeros((5, 2)), Y), np.zeros((4000, 2))).mean
    counts = np.bincount(np.asarray(pred[:, 0]).astype(int), minlength=5)
    assert chisquare(counts).pvalue > 1e-4


def test_non_control_mean_is_the_training_mean(make_data, dtype, tol):
    Z, Y, Zt = make_data(dtype=dtype)
    model = NonControlMean()
    pred = model.predict(model.fit(Z, Y), Zt)
    assert pred.var.dtype == dtype and pred.mean.dtype == dtype
    np.testing.assert_allclose(np.asarray(pred.mean), np.tile(Y.astype(float).mean(0), (len(Zt), 1)), **tol)


def test_control_predicts_ctrl(make_data, dtype):
    Z, Y, Zt = make_data(dtype=dtype)
    ctrl = np.linspace(0.0, 1.0, Y.shape[1])
    model = Control(ctrl)
    pred = model.predict(model.fit(Z, Y), Zt)
    assert pred.var.dtype == dtype and pred.mean.dtype == dtype
    np.testing.assert_array_equal(np.asarray(pred.mean), np.tile(ctrl.astype(dtype), (len(Zt), 1)))


def test_control_is_a_hashable_value():
    a, b = Control(np.array([1.0, 2.0])), Control([1.0, 2.0])
    assert a == b and hash(a) == hash(b)
    assert a != Control([1.0, 3.0])
    with pytest.raises(ValueError):
        a.ctrl[0] = 5.0  # read-only: the hash cannot go stale


def test_control_checks_its_vector_and_the_gene_count():
    with pytest.raises(NonFiniteError, match="ctrl"):
        Control([1.0, np.nan])
    with pytest.raises(ShapeError, match="ctrl"):
        Control(np.ones((2, 2)))
    with pytest.raises(ShapeError, match="3 genes but ctrl has 2"):
        Control([1.0, 2.0]).fit(np.ones((4, 2)), np.ones((4, 3)))


def test_random_perturbation_seed_must_be_an_int():
    with pytest.raises(InputError, match="seed"):
        RandomPerturbation(seed=1.5)

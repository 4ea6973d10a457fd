"""The shared interface and input checks, across every non-GP model."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpllm.errors import InputError, NonFiniteError, ShapeError
from gpllm.models.base import Model, Prediction, check_fit_inputs, check_predict_inputs
from gpllm.models.baselines import Control, NonControlMean, RandomPerturbation
from gpllm.models.knn import KNN
from gpllm.models.ridge import Ridge

G = 6
MODELS = [
    KNN(k=1),
    KNN(k="tune", k_grid=(1, 2)),
    Ridge(lam=0.5),
    Ridge(lam="loo", grid=(0.1, 1.0)),
    RandomPerturbation(seed=0),
    NonControlMean(),
    Control(np.zeros(G)),
]
IDS = [m.name for m in MODELS]


def _data(n=5, q=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, q)), rng.normal(size=(n, G))


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_models_follow_the_protocol(model):
    assert isinstance(model, Model)
    assert isinstance(model.name, str)
    hash(model)  # a valid jit static argument
    Z, Y = _data()
    state = model.fit(Z, Y)
    assert isinstance(state, tuple) and hasattr(state, "_fields")  # a NamedTuple
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree_util.tree_leaves(state))
    pred = model.predict(state, Z[:2])
    assert isinstance(pred, Prediction) and pred.mean.shape == (2, G)


def test_model_names_are_distinct():
    assert len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_fit_and_predict_reject_bad_shapes(model):
    Z, Y = _data()
    with pytest.raises(ShapeError, match=r"Z_train must be 2-D, got shape \(5,\)"):
        model.fit(Z[:, 0], Y)
    with pytest.raises(ShapeError, match=r"Z_train \(5, 3\) and Y_train \(4, 6\)"):
        model.fit(Z, Y[:4])
    with pytest.raises(InputError, match=r"Z_train \(0, 3\)"):
        model.fit(Z[:0], Y[:0])
    state = model.fit(Z, Y)
    with pytest.raises(ShapeError, match=r"Z_test \(2, 4\).*fitted with 3"):
        model.predict(state, np.zeros((2, 4)))
    with pytest.raises(InputError, match=r"Z_test \(0, 3\)"):
        model.predict(state, np.zeros((0, 3)))


@pytest.mark.parametrize("model", MODELS, ids=IDS)
@settings(max_examples=10, deadline=None)
@given(
    which=st.sampled_from(["Z_train", "Y_train", "Z_test"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    row=st.integers(0, 4),
    col=st.integers(0, 2),
)
def test_non_finite_inputs_are_named(model, which, value, row, col):
    Z, Y = _data()
    Zt = Z.copy()
    bad = {"Z_train": Z, "Y_train": Y, "Z_test": Zt}[which]
    bad[row, col] = value
    shape = rf"\({bad.shape[0]}, {bad.shape[1]}\)"
    with pytest.raises(NonFiniteError, match=rf"{which} {shape}.*index \({row}, {col}\)"):
        model.predict(model.fit(Z, Y), Zt)


def test_dtypes_are_promoted_to_one_float():
    Z32, Y64 = np.ones((3, 2), np.float32), np.ones((3, 4))
    Z, Y = check_fit_inputs(Z32, Y64)
    assert Z.dtype == Y.dtype == np.float64
    Z, Y = check_fit_inputs(np.ones((3, 2), np.float32), np.ones((3, 4), np.float32))
    assert Z.dtype == Y.dtype == np.float32
    Z, Y = check_fit_inputs(np.ones((3, 2), int), np.ones((3, 4), bool))
    assert Z.dtype == Y.dtype == np.float64
    assert check_predict_inputs(2, np.ones((1, 2)), dtype=np.float32).dtype == np.float32


def test_non_numeric_input_is_rejected():
    with pytest.raises(InputError, match="Z_train"):
        check_fit_inputs(np.array([["a", "b"]]), np.ones((1, 2)))
    with pytest.raises(InputError, match="Y_train"):
        check_fit_inputs(np.ones((1, 2)), np.ones((1, 2), complex))


def test_zero_columns_are_rejected():
    with pytest.raises(ShapeError, match="genes G = 0"):
        check_fit_inputs(np.ones((3, 2)), np.ones((3, 0)))


def test_min_rows_is_enforced():
    with pytest.raises(InputError, match="at least 2"):
        check_fit_inputs(np.ones((1, 2)), np.ones((1, 3)), min_rows=2)


@pytest.mark.parametrize("model", [KNN(k=2), Ridge(lam=0.5), NonControlMean()], ids=lambda m: m.name)
def test_fit_vmaps_over_folds(model):
    """Checks skip values of tracers, so a fit can be batched over equal-size folds."""
    rng = np.random.default_rng(1)
    Zb, Yb, Zt = rng.normal(size=(3, 8, 2)), rng.normal(size=(3, 8, G)), rng.normal(size=(4, 2))
    batched = jax.vmap(lambda Z, Y: model.predict(model.fit(Z, Y), Zt).mean)(Zb, Yb)
    for f in range(3):
        np.testing.assert_allclose(
            np.asarray(batched[f]), np.asarray(model.predict(model.fit(Zb[f], Yb[f]), Zt).mean), rtol=1e-10
        )

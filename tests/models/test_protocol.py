"""Every registered model follows the one protocol the evaluation layer relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpllm.errors import InputError
from gpllm.models import base
from gpllm.models.registry import BUILTINS, BuildContext, ModelSpec

BLOCKS = (("text", 0, 2), ("sequence", 2, 4))


def _data(seed=0, n=24, q=4, g=6, m=5):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n + m, q))
    Y = np.tanh(Z @ rng.normal(size=(q, g))) + 0.2 * rng.normal(size=(n + m, g)) + 1.0
    return Z[:n], Y[:n], Z[n:]


def _build(name):
    return ModelSpec(name).build(BuildContext(blocks=BLOCKS, ctrl=np.ones(6), seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_fit_predict_record_restore(name):
    Z, Y, Z_test = _data()
    model = base.check_model(_build(name), name)
    state = model.fit(Z, Y)
    pred = model.predict(state, Z_test)
    assert np.asarray(pred.mean).shape == (len(Z_test), Y.shape[1])
    # Every built-in model states a predictive variance: (M,) shared by the genes, or (M, G).
    assert np.asarray(pred.var).shape in ((len(Z_test),), (len(Z_test), Y.shape[1]))
    assert (np.asarray(pred.var) > 0).all()
    record = base.record_of(model, state)
    assert json.loads(json.dumps(record)) == record  # JSON-ready, and exactly so
    again = model.predict(base.restore(model, record, Z, Y), Z_test)
    np.testing.assert_allclose(np.asarray(again.mean), np.asarray(pred.mean), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(again.var), np.asarray(pred.var), rtol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_folds_at_once_equal_folds_one_by_one(name):
    folds = [base.Fold(*_data(seed)) for seed in (1, 2, 3)]
    model = _build(name)
    together = base.fit_predict_folds(model, folds)
    for fold, fit in zip(folds, together):
        state = model.fit(fold.Z_train, fold.Y_train)
        alone = model.predict(state, fold.Z_test)
        np.testing.assert_allclose(np.asarray(fit.prediction.mean), np.asarray(alone.mean), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.asarray(fit.prediction.var), np.asarray(alone.var), rtol=1e-6)
        assert set(fit.record) == set(base.record_of(model, state))
        want = base.heldout_of(model, state, fold.Z_train, fold.Y_train)
        np.testing.assert_allclose(np.asarray(fit.heldout.residual), np.asarray(want.residual), rtol=1e-6, atol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in BUILTINS if base.zero_padding_invariant(_build(n))))
def test_zero_padding_invariance_is_declared_honestly(name):
    """A model that declares zero_padding_invariant predicts the same on zero-padded inputs."""
    model = _build(name)
    Z, Y, Z_test = _data()

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, 3)))

    plain = model.predict(model.fit(Z, Y), Z_test)
    padded = model.predict(model.fit(pad(Z), Y), pad(Z_test))
    np.testing.assert_allclose(np.asarray(padded.mean), np.asarray(plain.mean), rtol=1e-8, atol=1e-10)


class _NoPredict:
    def fit(self, Z, Y):
        return None


def test_an_object_without_the_protocol_is_named_with_its_missing_method():
    with pytest.raises(InputError, match="missing method.*predict"):
        base.check_model(_NoPredict(), "models[0]")

"""Every registered model follows the one protocol the evaluation layer relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpllm.errors import InputError, NonFiniteError, ShapeError
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


class _Output:
    """A model whose fold outputs are given: ``predict`` returns ``mean`` and ``var``, and
    ``heldout`` returns ``heldout``, whatever the fold."""

    def __init__(self, mean, var=None, heldout=None):
        self.mean, self.var, self._heldout = mean, var, heldout

    def fit(self, Z, Y):
        return None

    def predict(self, state, Z_test):
        return base.Prediction(self.mean, self.var)

    def heldout(self, state, Z, Y):
        return self._heldout


def _folds(n_folds=2, n=6, m=3, q=2, g=4):
    rng = np.random.default_rng(0)
    return [
        base.Fold(rng.normal(size=(n, q)), rng.normal(size=(n, g)), rng.normal(size=(m, q))) for _ in range(n_folds)
    ]


def _with_nan(shape, at=(0, 0)):
    x = np.ones(shape)
    x[at] = np.nan
    return x


@pytest.mark.parametrize(
    ("output", "error", "says"),
    [
        (_Output(np.ones((4, 4))), ShapeError, r"predicted mean has shape \(4, 4\); the fold's 3 test perturbations"),
        (_Output(_with_nan((3, 4), (1, 2))), NonFiniteError, r"predicted mean \(3, 4\) has 1 non-finite.*\(1, 2\)"),
        (_Output(np.ones((3, 4)), np.ones(4)), ShapeError, r"predicted variance has shape \(4,\).*\(3,\) or \(3, 4\)"),
        (_Output(np.ones((3, 4)), -np.ones((3, 4))), InputError, r"predicted variance \(3, 4\) must be > 0; 12 value"),
        (_Output(np.ones((3, 4)), _with_nan(3, 0)), NonFiniteError, r"predicted variance \(3,\) has 1 non-finite"),
        (
            _Output(np.ones((3, 4)), np.ones(3), base.HeldOut(np.ones((5, 4)), np.ones(6))),
            ShapeError,
            r"held-out residual has shape \(5, 4\); the fold's 6 training perturbations x 4 genes need \(6, 4\)",
        ),
        (
            _Output(np.ones((3, 4)), np.ones(3), base.HeldOut(np.ones((6, 4)), np.zeros(6))),
            InputError,
            r"held-out variance \(6,\) must be > 0; 6 value",
        ),
    ],
)
def test_a_models_invalid_output_is_named_with_its_fold(output, error, says):
    with pytest.raises(error, match=says) as caught:
        base.fit_predict_folds(output, _folds())
    assert caught.value.datasets == (0,)


def test_the_failing_fold_is_the_one_named():
    """Fold 1's outputs are wrong, fold 0's are right: the error says dataset 1."""

    class SecondFoldBad(_Output):
        def predict(self, state, Z_test):
            self.calls = getattr(self, "calls", 0) + 1
            return base.Prediction(np.ones((3, 4)) * (np.nan if self.calls == 2 else 1.0), None)

    with pytest.raises(NonFiniteError) as caught:
        base.fit_predict_folds(SecondFoldBad(None), _folds())
    assert caught.value.datasets == (1,)


def test_valid_outputs_pass_unchanged():
    heldout = base.HeldOut(np.zeros((6, 4)), np.ones((6, 4)))
    fits = base.fit_predict_folds(_Output(np.ones((3, 4)), np.ones(3), heldout), _folds())
    assert [fit.heldout for fit in fits] == [heldout, heldout]

"""Scoring does each calibration pass once, only where its columns are kept, and counts coverage exactly."""

from __future__ import annotations

import numpy as np
import pytest

import gpllm.evaluate.rows as rows
from gpllm.data.synthetic.screens import make_screens
from gpllm.evaluate.grid import Chunk
from gpllm.evaluate.metrics import coverage_of, predictive_scores
from gpllm.evaluate.rows import CALIBRATION_COLUMNS, RECAL, VAR_SCALE, fold_rows
from gpllm.evaluate.splits import make_plan
from gpllm.models.base import FoldFit, HeldOut, Prediction


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_coverage_counts_equal_one_comparison_per_level(dtype):
    """Unsorted and repeated levels, ties at a level, NaN entries (inside no interval): each
    fraction times K is exactly NumPy's count of |z| <= z_l."""
    rng = np.random.default_rng(0)
    abs_z = np.abs(rng.normal(size=(23, 57))).astype(dtype)
    levels = np.asarray([1.2, 0.3, 0.8, 0.3, 2.5], dtype)
    abs_z[0, :4] = np.nan
    abs_z[1, :6] = levels[2]  # exactly on the interval's edge: inside
    counts = np.sum(abs_z[:, :, None] <= levels, axis=1)
    got = np.asarray(coverage_of(abs_z, levels))
    assert got.dtype == dtype and got.shape == (23, 5)
    np.testing.assert_array_equal(np.rint(got.astype(np.float64) * abs_z.shape[1]), counts)


@pytest.fixture(scope="module")
def fold():
    draw = make_screens(3, n_perts=40, n_genes=25)
    data = draw.screens["K562"]
    split = make_plan(data.perts, n_folds=3, sizes=(20,), seed=0).splits[0]
    return data, split


def _fit(data, split, var, heldout) -> FoldFit:
    rng = np.random.default_rng(1)
    mean = data.Y[split.test] + 0.1 * rng.normal(size=data.Y[split.test].shape)
    return FoldFit(Prediction(mean, var), {}, heldout)


def _counting(monkeypatch) -> list:
    calls = []
    original = rows._calibration

    def counted(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(rows, "_calibration", counted)
    return calls


def test_no_variance_is_never_scored_and_its_columns_are_nan(fold, monkeypatch):
    data, split = fold
    calls = _counting(monkeypatch)
    frame = fold_rows(Chunk("K562", "text", "mine", 20), data, split, _fit(data, split, None, None))
    assert calls == []
    for name in CALIBRATION_COLUMNS:
        assert frame[name].is_nan().all() and frame[name + RECAL].is_nan().all()


def test_without_a_scale_only_the_raw_variance_is_scored(fold, monkeypatch):
    data, split = fold
    calls = _counting(monkeypatch)
    m = len(split.test)
    frame = fold_rows(Chunk("K562", "text", "mine", 20), data, split, _fit(data, split, np.full(m, 0.3), None))
    assert len(calls) == 1
    assert frame[VAR_SCALE].is_nan().all() and frame["nll" + RECAL].is_nan().all()
    assert not frame["nll"].is_nan().any()


def test_a_shared_variance_scores_as_its_broadcast_with_the_checked_functions(fold, monkeypatch):
    """(M,) variance and its scale s: one pass for v, one for s v, each equal to the checked
    predictive_scores on the (M, G) broadcast."""
    data, split = fold
    calls = _counting(monkeypatch)
    rng = np.random.default_rng(2)
    m, n, g = len(split.test), len(split.train), data.Y.shape[1]
    var = rng.uniform(0.1, 0.5, size=m).astype(np.float32)
    heldout = HeldOut(rng.normal(size=(n, g)), rng.uniform(0.5, 1.5, size=n))
    fit = _fit(data, split, var, heldout)
    frame = fold_rows(Chunk("K562", "text", "mine", 20), data, split, fit)
    assert len(calls) == 2
    scale = float(np.mean(heldout.residual**2 / heldout.var[:, None]))
    np.testing.assert_allclose(frame[VAR_SCALE].to_numpy(), scale, rtol=1e-12)
    Y_true = data.Y[split.test]
    for suffix, v in (("", var), (RECAL, np.float32(scale) * var)):
        expected = predictive_scores(Y_true, fit.prediction.mean, np.broadcast_to(v[:, None], (m, g)))
        np.testing.assert_allclose(frame["nll" + suffix].to_numpy(), expected.nll, rtol=1e-12)
        np.testing.assert_allclose(frame["crps" + suffix].to_numpy(), expected.crps, rtol=1e-12)
        np.testing.assert_array_equal(frame["coverage50" + suffix].to_numpy(), np.asarray(expected.coverage)[:, 4])

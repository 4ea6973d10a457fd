"""One fold's rows: the one-program scoring equals the checked metrics, column by column."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from gpllm.data.embeddings.assemble import build_embedding
from gpllm.data.synthetic.screens import make_screens
from gpllm.errors import InputError
from gpllm.evaluate.grid import NO_EMBEDDING, Chunk
from gpllm.evaluate.metrics import COVERAGE_LEVELS, perturbation_metrics, predictive_scores, variance_scale
from gpllm.evaluate.rows import (
    CALIBRATION_COLUMNS,
    DE_COVERAGE_LEVELS,
    RECAL,
    RESULTS_SCHEMA,
    VAR_SCALE,
    fold_rows,
)
from gpllm.evaluate.splits import make_plan
from gpllm.models.base import Fold, FoldFit, Prediction, fit_predict_folds
from gpllm.models.padding import ROW_BUCKET
from gpllm.models.registry import build_model


@pytest.fixture(scope="module")
def fold():
    """A small screen, its text embedding and the first fold of a plan (M = 15 test rows,
    not a multiple of ROW_BUCKET, so the scores run on padded rows)."""
    draw = make_screens(3, n_perts=45, n_genes=30)
    data = draw.screens["K562"]
    emb = build_embedding({"text": draw.vectors["text"]}, data.perts, k=4)
    data = data.select(emb.names)
    split = make_plan(data.perts, n_folds=3, sizes=(20,), seed=0).splits[0]
    assert len(split.test) % ROW_BUCKET
    return data, emb, split


def calibration_columns(Y_true, mean, var, de, suffix: str = "") -> dict:
    """The calibration columns from the checked predictive_scores (NaN without a variance)."""
    if var is None:
        return {name + suffix: np.full(len(Y_true), np.nan) for name in CALIBRATION_COLUMNS}
    every = predictive_scores(Y_true, mean, var, levels=COVERAGE_LEVELS)
    top = predictive_scores(Y_true, mean, var, levels=DE_COVERAGE_LEVELS, genes=de)
    values = [every.nll, every.crps, *np.asarray(every.coverage).T, top.nll, top.crps, *np.asarray(top.coverage).T]
    return {name + suffix: v for name, v in zip(CALIBRATION_COLUMNS, values, strict=True)}


def _checked_rows(data, split, fit: FoldFit) -> dict:
    """The fold's scores from the checked public functions, one call per column group."""
    Y_true, de = data.Y[split.test], data.de[split.test]
    mean = np.asarray(fit.prediction.mean)
    var = None if fit.prediction.var is None else np.asarray(fit.prediction.var)
    ctrl_ref = perturbation_metrics(Y_true, mean, reference=data.ctrl, de=de)
    mean_ref = perturbation_metrics(Y_true, mean, reference=data.Y[split.train].mean(axis=0), de=de)
    scale = np.nan if var is None or fit.heldout is None else variance_scale(fit.heldout.residual, fit.heldout.var)
    return {
        "pearson_de": ctrl_ref.pearson_de,
        "pearson_all": ctrl_ref.pearson_all,
        "mae_de": ctrl_ref.mae_de,
        "mae_all": ctrl_ref.mae_all,
        "pearson_de_meanref": mean_ref.pearson_de,
        "undefined_de": ctrl_ref.undefined_de,
        "undefined_all": ctrl_ref.undefined_all,
        "effect_size": np.linalg.norm(np.take_along_axis(Y_true - data.ctrl, de, axis=1), axis=1),
        **calibration_columns(Y_true, mean, var, de),
        VAR_SCALE: np.full(len(split.test), scale),
        **calibration_columns(Y_true, mean, None if np.isnan(scale) else scale * var, de, RECAL),
    }


def _fit(name, data, emb, split) -> FoldFit:
    model = build_model(name, ctrl=data.ctrl) if name == "control" else build_model(name)
    [fit] = fit_predict_folds(model, [Fold(emb.Z[split.train], data.Y[split.train], emb.Z[split.test])])
    return fit


@pytest.mark.parametrize("name", ["ridge", "knn_ktuned", "random_perturbation", "nonctrl_mean"])
def test_fold_rows_equal_the_checked_metrics(fold, name):
    data, emb, split = fold
    fit = _fit(name, data, emb, split)
    rows = fold_rows(Chunk("K562", "text", name, 20), data, split, fit)
    assert rows.schema == RESULTS_SCHEMA
    assert rows["pert"].to_list() == [data.perts[i] for i in split.test]
    for column, expected in _checked_rows(data, split, fit).items():
        got, expected = rows[column].to_numpy(), np.asarray(expected)
        if expected.dtype == bool:
            np.testing.assert_array_equal(got, expected, err_msg=column)
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14, err_msg=column)


def test_a_model_without_variance_or_heldout_gets_nan_calibration(fold):
    data, emb, split = fold
    fit = _fit("ridge", data, emb, split)
    no_var = FoldFit(Prediction(fit.prediction.mean, None), fit.record, fit.heldout)
    rows = fold_rows(Chunk("K562", "text", "mine", 20), data, split, no_var)
    assert rows.select(pl.all().exclude(RESULTS_SCHEMA.names()[:15]).is_nan().all()).row(0) == (True,) * 33
    no_heldout = fold_rows(Chunk("K562", "text", "mine", 20), data, split, fit._replace(heldout=None))
    assert not np.isnan(no_heldout["nll"].to_numpy()).any()
    assert np.isnan(no_heldout[VAR_SCALE].to_numpy()).all() and np.isnan(no_heldout["nll" + RECAL].to_numpy()).all()


def test_an_unchecked_invalid_fit_is_refused_not_scored_as_nan(fold):
    """fit_predict_folds checks a model's outputs (tests/models/test_protocol.py); a fit handed to
    fold_rows without that check still fails loudly rather than writing NaN rows."""
    data, emb, split = fold
    fit = _fit("nonctrl_mean", data, emb, split)
    chunk = Chunk("K562", NO_EMBEDDING, "nonctrl_mean", 20)
    mean = np.array(fit.prediction.mean)
    mean[2, 3] = np.nan
    with pytest.raises(InputError, match="cannot be scored"):
        fold_rows(chunk, data, split, fit._replace(prediction=Prediction(mean, fit.prediction.var)))
    with pytest.raises(InputError, match="cannot be scored"):
        fold_rows(chunk, data, split, fit._replace(prediction=Prediction(fit.prediction.mean, -fit.prediction.var)))


def test_padding_the_test_rows_changes_no_score(fold):
    """Scores are per row: a fold scored with its rows padded to the bucket equals the same
    fold cut to a bucket multiple, row for row."""
    data, emb, split = fold
    fit = _fit("random_perturbation", data, emb, split)
    rows = fold_rows(Chunk("K562", NO_EMBEDDING, "random_perturbation", 20), data, split, fit)
    m = ROW_BUCKET * (len(split.test) // ROW_BUCKET) or len(split.test) - 1
    cut = dataclasses.replace(split, test=split.test[:m])
    prediction = Prediction(np.asarray(fit.prediction.mean)[:m], np.asarray(fit.prediction.var)[:m])
    fewer = fold_rows(
        Chunk("K562", NO_EMBEDDING, "random_perturbation", 20), data, cut, fit._replace(prediction=prediction)
    )
    float_columns = [c for c, kind in RESULTS_SCHEMA.items() if kind.is_float()]
    np.testing.assert_array_equal(fewer.select(float_columns).to_numpy(), rows.head(m).select(float_columns).to_numpy())

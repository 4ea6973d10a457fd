"""The sweep's result rows: their schema, and the scoring of one fold's predictions.

One row per (screen, model, embedding, size, fold, test perturbation), with
the columns of :data:`RESULTS_SCHEMA`: the grid cell and ``pert``;
pearson_de, pearson_all, mae_de, mae_all (against the control,
:func:`~gpllm.evaluate.metrics.perturbation_metrics`), pearson_de_meanref
(against the training fold's mean), undefined_de, undefined_all,
effect_size; hyperparameters (the model's record of what the fold's fit
chose, as JSON, on the fold's first row; "" on its other rows and for models
that record nothing), and the calibration of the predictive distribution
(:func:`~gpllm.evaluate.metrics.predictive_scores`, NaN for a model without a
variance):

- nll, crps, coverage10 ... coverage90, coverage95 (the central intervals of
  :data:`~gpllm.evaluate.metrics.COVERAGE_LEVELS`), over all genes;
- nll_de, crps_de, coverage50_de, coverage90_de over the top-20 DE genes;
- var_scale: s = mean(r^2 / v) over the model's leave-one-out predictions on
  the training fold (its ``heldout`` hook; NaN where it has none), and every
  column above again, suffixed ``_recal``, with the variance s v. The test
  fold never enters s.

The report (:mod:`gpllm.report`) reads these names from here.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.evaluate.grid import Chunk
from gpllm.evaluate.metrics import COVERAGE_LEVELS, perturbation_metrics, predictive_scores, variance_scale
from gpllm.evaluate.splits import Split
from gpllm.models.base import FoldFit

#: The levels whose coverage is also scored over the top-20 DE genes.
DE_COVERAGE_LEVELS = (0.5, 0.9)
#: Suffix of the recalibrated columns; VAR_SCALE: the column of the factor applied.
RECAL = "_recal"
VAR_SCALE = "var_scale"


def coverage_column(level: float, de: bool = False) -> str:
    """``coverage90`` for the 90% interval over all genes, ``coverage90_de`` over the DE genes."""
    return f"coverage{round(100 * level)}" + ("_de" if de else "")


#: The calibration columns, in the order :func:`calibration_columns` fills them.
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "nll", "crps", *map(coverage_column, COVERAGE_LEVELS),
    "nll_de", "crps_de", *(coverage_column(level, de=True) for level in DE_COVERAGE_LEVELS),
)  # fmt: skip

#: A results row, column by column, in order (``results.parquet`` and every part).
RESULTS_SCHEMA = pl.Schema({
    "screen": pl.String, "model": pl.String, "embedding": pl.String, "size": pl.Int64, "fold": pl.Int64,
    "pert": pl.String,
    **dict.fromkeys(("pearson_de", "pearson_all", "mae_de", "mae_all", "pearson_de_meanref"), pl.Float64),
    "undefined_de": pl.Boolean, "undefined_all": pl.Boolean, "effect_size": pl.Float64, "hyperparameters": pl.String,
    **dict.fromkeys(CALIBRATION_COLUMNS, pl.Float64), VAR_SCALE: pl.Float64,
    **dict.fromkeys((name + RECAL for name in CALIBRATION_COLUMNS), pl.Float64),
})  # fmt: skip


def _effect_size(delta: np.ndarray, de: np.ndarray) -> np.ndarray:
    """|x - ctrl| over each perturbation's top-20 DE genes (L2 norm), (M,)."""
    return np.linalg.norm(np.take_along_axis(delta, de, axis=1), axis=1)


def calibration_columns(Y_true: np.ndarray, mean: np.ndarray, var, de: np.ndarray, suffix: str = "") -> dict:
    """The :data:`CALIBRATION_COLUMNS` (each name + ``suffix``) for one fold's M test rows;
    NaN everywhere when ``var`` is None."""
    if var is None:
        return {name + suffix: np.full(len(Y_true), np.nan) for name in CALIBRATION_COLUMNS}
    every = predictive_scores(Y_true, mean, var)
    top = predictive_scores(Y_true, mean, var, levels=DE_COVERAGE_LEVELS, genes=de)
    values = [every.nll, every.crps, *np.asarray(every.coverage).T, top.nll, top.crps, *np.asarray(top.coverage).T]
    return {name + suffix: np.asarray(v) for name, v in zip(CALIBRATION_COLUMNS, values, strict=True)}


def fold_rows(chunk: Chunk, data: PerturbationData, split: Split, fit: FoldFit) -> pl.DataFrame:
    """One fold's rows (:data:`RESULTS_SCHEMA`): ``fit``'s predictions for ``split.test`` scored
    against ``data``."""
    prediction = fit.prediction
    Y_true = data.Y[split.test]
    de = data.de[split.test]
    mean = np.asarray(prediction.mean)
    ctrl_ref = perturbation_metrics(Y_true, mean, reference=data.ctrl, de=de)
    mean_ref = perturbation_metrics(Y_true, mean, reference=data.Y[split.train].mean(axis=0), de=de)
    n = len(split.test)
    var = None if prediction.var is None else np.asarray(prediction.var)
    scale = np.nan
    if var is not None and fit.heldout is not None:
        scale = variance_scale(fit.heldout.residual, fit.heldout.var)
        if not scale > 0:  # every held-out residual exactly 0: no scale to apply
            scale = np.nan
    columns = {
        "screen": [chunk.screen] * n, "model": [chunk.model] * n, "embedding": [chunk.embedding] * n,
        "size": np.full(n, chunk.size), "fold": np.full(n, split.fold),
        "pert": [data.perts[i] for i in split.test],
        "pearson_de": np.asarray(ctrl_ref.pearson_de), "pearson_all": np.asarray(ctrl_ref.pearson_all),
        "mae_de": np.asarray(ctrl_ref.mae_de), "mae_all": np.asarray(ctrl_ref.mae_all),
        "pearson_de_meanref": np.asarray(mean_ref.pearson_de),
        "undefined_de": np.asarray(ctrl_ref.undefined_de), "undefined_all": np.asarray(ctrl_ref.undefined_all),
        "effect_size": _effect_size(Y_true - data.ctrl, de),
        # The record once per fold: a user kernel's may hold a whole projection matrix.
        "hyperparameters": [json.dumps(dict(fit.record), sort_keys=True) if fit.record else ""] + [""] * (n - 1),
        **calibration_columns(Y_true, mean, var, de),
        VAR_SCALE: np.full(n, scale),
        **calibration_columns(Y_true, mean, None if np.isnan(scale) else scale * var, de, RECAL),
    }  # fmt: skip
    return pl.DataFrame(columns).cast(dict(RESULTS_SCHEMA))


def records_by_fold(frame: pl.DataFrame | None) -> dict[int, dict]:
    """Each fold's record (the ``hyperparameters`` JSON on its first row) in a part's rows."""
    if frame is None or frame.height == 0:
        return {}
    first = frame.group_by("fold", maintain_order=True).agg(pl.col("hyperparameters").first())
    return {fold: json.loads(text) for fold, text in zip(first["fold"].to_list(), first["hyperparameters"].to_list()) if text}

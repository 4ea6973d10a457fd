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

A fold is scored by a few compiled programs (:func:`score_fold`), its test rows
padded to a multiple of :data:`~gpllm.models.padding.ROW_BUCKET` so that every fold of a screen shares
them. The model's outputs arrive checked
(:func:`~gpllm.models.base.check_fold_fit`), so scoring uses the metrics'
unchecked programs. The report (:mod:`gpllm.report`) reads the column names from here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.errors import InputError
from gpllm.evaluate.metrics import (
    COVERAGE_LEVELS,
    PerturbationMetrics,
    PredictiveScores,
    interval_z,
    roundoff,
    unchecked_perturbation_metrics,
    unchecked_predictive_scores,
    unchecked_variance_scale,
)
from gpllm.evaluate.splits import Split
from gpllm.models.padding import pad_rows, take_rows_on_device

if TYPE_CHECKING:  # what a chunk and a fit are; scoring only reads them
    from gpllm.evaluate.grid import Chunk
    from gpllm.models.base import FoldFit

Array = jax.Array

#: The levels whose coverage is also scored over the top-20 DE genes.
DE_COVERAGE_LEVELS = (0.5, 0.9)
#: Suffix of the recalibrated columns; VAR_SCALE: the column of the factor applied.
RECAL = "_recal"
VAR_SCALE = "var_scale"


def coverage_column(level: float, de: bool = False) -> str:
    """``coverage90`` for the 90% interval over all genes, ``coverage90_de`` over the DE genes."""
    return f"coverage{round(100 * level)}" + ("_de" if de else "")


#: The calibration columns, in the order :func:`fold_rows` fills them.
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "nll",
    "crps",
    *map(coverage_column, COVERAGE_LEVELS),
    "nll_de",
    "crps_de",
    *(coverage_column(level, de=True) for level in DE_COVERAGE_LEVELS),
)

#: A results row, column by column, in order (``results.parquet`` and every part).
RESULTS_SCHEMA = pl.Schema(
    {
        "screen": pl.String,
        "model": pl.String,
        "embedding": pl.String,
        "size": pl.Int64,
        "fold": pl.Int64,
        "pert": pl.String,
        **dict.fromkeys(("pearson_de", "pearson_all", "mae_de", "mae_all", "pearson_de_meanref"), pl.Float64),
        "undefined_de": pl.Boolean,
        "undefined_all": pl.Boolean,
        "effect_size": pl.Float64,
        "hyperparameters": pl.String,
        **dict.fromkeys(CALIBRATION_COLUMNS, pl.Float64),
        VAR_SCALE: pl.Float64,
        **dict.fromkeys((name + RECAL for name in CALIBRATION_COLUMNS), pl.Float64),
    }
)


def _nan_columns(n: int, suffix: str) -> dict:
    return {name + suffix: np.full(n, np.nan) for name in CALIBRATION_COLUMNS}


def _calibration_dict(every: PredictiveScores, top: PredictiveScores, suffix: str) -> dict:
    values = [every.nll, every.crps, *np.asarray(every.coverage).T, top.nll, top.crps, *np.asarray(top.coverage).T]
    return {name + suffix: np.asarray(v) for name, v in zip(CALIBRATION_COLUMNS, values, strict=True)}


class FoldScores(NamedTuple):
    """Every score of one fold's M test rows, from :func:`score_fold`."""

    ctrl_ref: PerturbationMetrics  # deltas against the control
    mean_ref: PerturbationMetrics  # deltas against the training fold's mean
    every: PredictiveScores | None  # N(mean, var) over all genes; None without a variance
    top: PredictiveScores | None  # the same over each row's DE genes
    every_recal: PredictiveScores | None  # N(mean, s var); None without an s
    top_recal: PredictiveScores | None
    valid: Array  # () bool: mean finite, var (where given) finite and > 0, s var (where given) > 0


def score_fold(
    Y_true: Array,
    mean: Array,
    var: Array | None,
    scale: Array | None,
    ctrl: Array,
    train_mean: Array,
    de: Array,
    eps: Array,
) -> FoldScores:
    """All scores of a fold: Y_true, mean (M, G) in one float dtype; var (M,) or (M, G) in the
    model's own dtype, or None (no variance); scale: () s in var's dtype, or None (no
    recalibration); ctrl and train_mean (G,), de (M, K); eps (4,) the unit roundoffs of the
    deltas' sides (true, predicted) against ctrl, then against train_mean
    (:func:`~gpllm.evaluate.metrics.roundoff`).

    A few compiled programs (the metrics, the calibration of var and of s var, each only
    where that variance is scored, the validity check) rather than one: one fused program
    takes ~150 MiB more to compile.
    """
    one = None if var is None else jnp.ones((), var.dtype)
    scored = (var is not None, var is not None and scale is not None)
    every, top = _calibration(Y_true, mean, var, one, de) if scored[0] else (None, None)
    every_recal, top_recal = _calibration(Y_true, mean, var, scale, de) if scored[1] else (None, None)
    return FoldScores(
        *_both_metrics(Y_true, mean, ctrl, train_mean, de, eps),
        every,
        top,
        every_recal,
        top_recal,
        _valid(mean, var, scale),
    )


def _both_metrics(
    Y_true: Array, mean: Array, ctrl: Array, train_mean: Array, de: Array, eps: Array
) -> tuple[PerturbationMetrics, PerturbationMetrics]:
    """GEARS' metrics against ctrl and against the training mean (:func:`score_fold`'s arguments).

    Two calls of one compiled program: XLA fuses the two references' metrics as one program
    ~2x slower on CPU than as two."""
    return (
        unchecked_perturbation_metrics(Y_true, mean, ctrl, de, eps[0], eps[1]),
        unchecked_perturbation_metrics(Y_true, mean, train_mean, de, eps[2], eps[3]),
    )


def _scaled(var: Array, scale: Array) -> Array:
    """s v in the variance's own dtype, as the checked path computes it (a Python float times
    an array); s = 1 leaves v exact."""
    return scale.astype(var.dtype) * var


@jax.jit
def _calibration(
    Y_true: Array, mean: Array, var: Array, scale: Array, de: Array
) -> tuple[PredictiveScores, PredictiveScores]:
    """N(mean, s var) scored over all genes at :data:`COVERAGE_LEVELS` and over each row's DE
    genes at :data:`DE_COVERAGE_LEVELS`: Y_true, mean (M, G); var (M,) or (M, G), broadcast and
    cast to Y_true's dtype here (not on the host); scale () s; de (M, K)."""
    var = _scaled(var, scale).astype(Y_true.dtype)
    # Materialised as the (M, G) array it was when the host broadcast it: fused with the
    # scores instead, XLA reorders their arithmetic (NLL ~1e-13 apart).
    var = jax.lax.optimization_barrier(jnp.broadcast_to(var[:, None] if var.ndim == 1 else var, Y_true.shape))
    take = lambda x: jnp.take_along_axis(x, de, axis=1)  # noqa: E731
    z_every, z_top = interval_z(COVERAGE_LEVELS, Y_true.dtype), interval_z(DE_COVERAGE_LEVELS, Y_true.dtype)
    return (
        unchecked_predictive_scores(Y_true, mean, var, z_every),
        unchecked_predictive_scores(take(Y_true), take(mean), take(var), z_top),
    )


@jax.jit
def _valid(mean: Array, var: Array | None, scale: Array | None) -> Array:
    """() bool: mean finite, var (if any) finite and > 0, s var (if any) > 0."""
    valid = jnp.all(jnp.isfinite(mean))
    if var is not None:
        valid &= jnp.all(jnp.isfinite(var) & (var > 0))
        if scale is not None:
            valid &= jnp.all(_scaled(var, scale) > 0)
    return valid


@jax.jit
def _heldout_scale(residual: Array, var: Array) -> Array:
    """s = mean(r^2 / v) (:func:`~gpllm.evaluate.metrics.variance_scale`) of checked held-out
    predictions: residual (N, G), var (N,) or (N, G)."""
    var = var[:, None] if var.ndim == 1 else var
    return unchecked_variance_scale(residual, var.astype(residual.dtype))


def _variance_scale(fit: FoldFit) -> float:
    """The fold's recalibration factor s, NaN where the model has no held-out predictions or
    every held-out residual is exactly 0 (no scale to apply)."""
    if fit.prediction.var is None or fit.heldout is None:
        return np.nan
    scale = float(_heldout_scale(jnp.asarray(fit.heldout.residual), jnp.asarray(fit.heldout.var)))
    return scale if scale > 0 else np.nan


def _fold_scores(
    Y_pad: Array, m: int, mean, var, scale: float, ctrl: np.ndarray, train_mean: np.ndarray, de_pad: np.ndarray
) -> FoldScores:
    """:func:`score_fold` on one fold's M test rows: Y_pad (a device array) and de_pad, the fold's
    measured profiles and DE genes already padded to :data:`~gpllm.models.padding.ROW_BUCKET` (by
    repeating the last test row's index, so that the test block is copied once); mean (M, G); var
    (M,) or (M, G) in the model's dtype, or None; scale s, NaN for none. Scores not computed (no
    variance, no s) are None."""
    mean = np.asarray(mean)
    var = None if var is None else np.asarray(var)
    dtype = np.result_type(Y_pad.dtype, mean, ctrl, train_mean, *([] if var is None else [var]))
    eps = np.asarray(
        [roundoff(Y_pad, ctrl), roundoff(mean, ctrl), roundoff(Y_pad, train_mean), roundoff(mean, train_mean)], dtype
    )
    # The same device array where the dtype matches: every program below reads the one copy.
    Y_pad, mean_pad = jnp.asarray(Y_pad, dtype), pad_rows(mean.astype(dtype, copy=False))
    var_pad = None if var is None else pad_rows(var)
    s = None if var is None or np.isnan(scale) else np.asarray(scale, var.dtype)
    # On the device once, not once per program score_fold runs.
    inputs = jax.device_put((mean_pad, var_pad, s, ctrl.astype(dtype), train_mean.astype(dtype), de_pad, eps))
    scores = jax.device_get(score_fold(Y_pad, *inputs))
    if not scores.valid:  # a fit not checked by check_fold_fit, or an s v that underflows
        raise InputError(
            f"a fold's {m} predictions cannot be scored: the mean must be finite and the variance finite and > 0, "
            f"also once scaled by the held-out s = {scale:g} (gpllm.models.base.check_fold_fit names what is wrong)"
        )
    return jax.tree.map(lambda x: x[:m] if np.ndim(x) else x, scores)


def fold_rows(chunk: Chunk, data: PerturbationData, split: Split, fit: FoldFit) -> pl.DataFrame:
    """One fold's rows (:data:`RESULTS_SCHEMA`): ``fit``'s predictions for ``split.test`` scored
    against ``data``, every score at once (:func:`score_fold`). ``fit`` as
    :func:`~gpllm.models.base.fit_predict_folds` returns it, its outputs checked."""
    prediction = fit.prediction
    n = len(split.test)
    test = pad_rows(np.asarray(split.test))
    # The test block's one copy, on the device (for G ~ 8,000 genes it is the largest array here).
    Y_pad, de_pad = take_rows_on_device(data.Y, test), data.de[test]
    de = de_pad[:n]
    scale = _variance_scale(fit)
    # Calibration columns a fold has no variance (or no s) for are NaN, and never computed.
    train_mean = data.Y[split.train].mean(axis=0)
    s = _fold_scores(Y_pad, n, prediction.mean, prediction.var, scale, data.ctrl, train_mean, de_pad)
    raw = _nan_columns(n, "") if s.every is None else _calibration_dict(s.every, s.top, "")
    recal = _nan_columns(n, RECAL) if s.every_recal is None else _calibration_dict(s.every_recal, s.top_recal, RECAL)
    calibration = {**raw, VAR_SCALE: np.full(n, scale), **recal}
    columns = {
        "screen": [chunk.screen] * n,
        "model": [chunk.model] * n,
        "embedding": [chunk.embedding] * n,
        "size": np.full(n, chunk.size),
        "fold": np.full(n, split.fold),
        "pert": [data.perts[i] for i in split.test],
        "pearson_de": s.ctrl_ref.pearson_de,
        "pearson_all": s.ctrl_ref.pearson_all,
        "mae_de": s.ctrl_ref.mae_de,
        "mae_all": s.ctrl_ref.mae_all,
        "pearson_de_meanref": s.mean_ref.pearson_de,
        "undefined_de": s.ctrl_ref.undefined_de,
        "undefined_all": s.ctrl_ref.undefined_all,
        # |x - ctrl| over the top-20 DE genes (L2 norm): the DE genes' deltas only.
        "effect_size": np.linalg.norm(data.Y[np.asarray(split.test)[:, None], de] - data.ctrl[de], axis=1),
        # The record once per fold: a user kernel's may hold a whole projection matrix.
        "hyperparameters": [json.dumps(dict(fit.record), sort_keys=True) if fit.record else ""] + [""] * (n - 1),
        **calibration,
    }
    return pl.DataFrame(columns).cast(dict(RESULTS_SCHEMA))


def records_by_fold(frame: pl.DataFrame | None) -> dict[int, dict]:
    """Each fold's record (the ``hyperparameters`` JSON on its first row) in a part's rows."""
    if frame is None or frame.height == 0:
        return {}
    first = frame.group_by("fold", maintain_order=True).agg(pl.col("hyperparameters").first())
    return {
        fold: json.loads(text)
        for fold, text in zip(first["fold"].to_list(), first["hyperparameters"].to_list())
        if text
    }

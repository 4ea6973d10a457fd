"""Calibration end to end: a correctly specified GP covers at the nominal levels, and the
recalibration factor is fitted on training folds only."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
from scipy.stats import binom

from gpllm.data.embeddings.assemble import build_embedding
from gpllm.data.synthetic.screens import make_screens
from gpllm.evaluate.grid import Chunk
from gpllm.evaluate.metrics import COVERAGE_LEVELS, predictive_scores
from gpllm.evaluate.runner.sweep import run_chunk
from gpllm.evaluate.splits import make_plan
from gpllm.gp import parameters
from gpllm.gp.kernels import RBF
from gpllm.gp.objective import GPParams, constraints_of
from gpllm.models.gp import GPModel

TRUTH = GPParams(kernel={"variance": jnp.asarray(1.3), "lengthscale": jnp.asarray(0.9)}, noise=jnp.asarray(0.2))


def _gp_draw(n=40, m=10, g=3000, q=2, seed=0):
    """Z (n + m, q) and g independent outputs drawn from the GP with TRUTH's hyperparameters."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n + m, q))
    d2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=2)
    K = 1.3 * np.exp(-0.5 * d2 / 0.9**2) + 0.2 * np.eye(n + m)
    Y = np.linalg.cholesky(K) @ rng.normal(size=(n + m, g))
    return Z[:n], Y[:n], Z[n:], Y[n:]


def _coverage_counts(var_factor: float) -> tuple[np.ndarray, int]:
    """Covered counts per level when the true GP (variance times ``var_factor``) predicts
    the test outputs; each output is scored at one test point only, so the g indicators
    are independent (the outputs are) and each count is Binomial(g, level)."""
    Z, Y, Zt, Yt = _gp_draw()
    model = GPModel(kernel=RBF(), center=False)  # the generating model: zero mean, TRUTH
    raw = parameters.unconstrain(constraints_of(model.kernel), TRUTH)
    pred = model.predict(model.condition(raw, Z, Y), Zt)
    m, g = Yt.shape
    genes = np.arange(g).reshape(g // m, m).T  # row j: outputs j, j + m, j + 2m, ...
    scores = predictive_scores(Yt, np.asarray(pred.mean), var_factor * np.asarray(pred.var), genes=genes)
    return np.asarray(scores.coverage).sum(axis=0) * (g // m), g


def _within_binomial_error(counts: np.ndarray, n: int) -> np.ndarray:
    alpha = 1e-4 / len(COVERAGE_LEVELS)  # two-sided, Bonferroni over the levels
    levels = np.asarray(COVERAGE_LEVELS)
    lo, hi = binom.ppf(alpha / 2, n, levels), binom.isf(alpha / 2, n, levels)
    return (lo <= np.round(counts)) & (np.round(counts) <= hi)


@pytest.mark.slow
def test_a_correctly_specified_gp_covers_within_sampling_error_of_nominal():
    counts, n = _coverage_counts(1.0)
    assert _within_binomial_error(counts, n).all(), dict(zip(COVERAGE_LEVELS, counts / n))


def test_the_coverage_check_catches_a_variance_off_by_a_factor_of_1_5():
    """The same bound rejects a GP whose variance is 1.5x too small or too large: the test
    above can fail."""
    for factor in (1 / 1.5, 1.5):
        counts, n = _coverage_counts(factor)
        assert not _within_binomial_error(counts, n)[[4, 8]].any(), factor  # the 50% and 90% intervals


# ------------------------------------------------------------ recalibration


@pytest.fixture(scope="module")
def small_screen():
    draw = make_screens(1, n_perts=40, n_genes=30)
    data = draw.screens["K562"]
    embedding = build_embedding({"text": draw.vectors["text"]}, data.perts, k=4)
    plan = make_plan(data.perts, n_folds=2, sizes=(15,), seed=0)
    return data, embedding, plan.splits


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gp", "ridge", "knn_ktuned", "nonctrl_mean"])
def test_recalibration_sees_the_training_fold_only(small_screen, name):
    """Changing a fold's test profiles changes its raw scores but not its variance scale.
    Both folds run together, as a sweep runs them (one compiled folds program for the GP), and
    only the changed fold's rows are compared: its test rows are the other fold's training rows."""
    data, embedding, splits = small_screen
    chunk = Chunk("K562", "none" if name == "nonctrl_mean" else "text", name, 15)
    emb = None if name == "nonctrl_mean" else embedding
    split = splits[0]
    Y = data.Y.copy()
    Y[split.test] += np.random.default_rng(1).normal(scale=0.5, size=Y[split.test].shape)
    rows, moved = (run_chunk(chunk, d, emb, splits, seed=0) for d in (data, dataclasses.replace(data, Y=Y)))
    changed_fold = (rows["fold"] == split.fold).to_numpy()
    assert changed_fold.any() and (moved["fold"] == rows["fold"]).all()
    np.testing.assert_array_equal(
        moved["var_scale"].to_numpy()[changed_fold], rows["var_scale"].to_numpy()[changed_fold]
    )
    assert np.isfinite(rows["var_scale"].to_numpy()).all()
    assert not np.allclose(moved["nll"].to_numpy()[changed_fold], rows["nll"].to_numpy()[changed_fold])
    assert rows.group_by("fold").agg(pl.col("var_scale").n_unique())["var_scale"].max() == 1  # one per fold
    if name == "ridge":  # its noise variance comes from the LOO residuals: s = 1 exactly
        np.testing.assert_allclose(rows["var_scale"].to_numpy(), 1.0, rtol=1e-10)
        np.testing.assert_allclose(rows["nll_recal"].to_numpy(), rows["nll"].to_numpy(), rtol=1e-9)

"""Per-perturbation metrics, as GEARS defines them, and their aggregation.

For test perturbation p with measured profile x_p, prediction x_hat_p and a
reference profile r (the control mean ctrl for GEARS' metrics; the training
mean for Systema's):

    delta = x_p - r,   delta_hat = x_hat_p - r
    pearson_all = pearson(delta_hat, delta) over all G genes
    pearson_de  = the same over p's top-20 DE genes
    mae_all     = mean |x_hat_p - x_p| over all genes (equal to the MAE of deltas)
    mae_de      = the same over p's top-20 DE genes

A correlation is undefined when either side is constant over the gene set (zero
variance, e.g. the Control baseline's zero delta); it is reported as 0, as
GEARS does, and flagged so the caller can count and say so. "Constant" means
a spread (max - min) within rounding of the profiles' scale over the gene set:

    max_g delta_g - min_g delta_g <= ROUNDING_ULPS eps max_g max(|x_g|, |r_g|)

with eps the unit roundoff of the coarser of x's and r's own dtypes (a float32
prediction against a float64 reference has float32's). Not only the
subtraction x - r rounds: x and r themselves may be the same profile computed
two ways, e.g. the mean training profile as a model predicts it (JAX, float32
or float64) and as the sweep takes it for the reference (NumPy), which differ
in the last ~sqrt(N) ulps of a mean over N rows. Such deltas are constant,
though their rounding noise would give ``scipy.stats.pearsonr`` a meaningless,
run-to-run varying value (scipy flags only exactly equal values).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gpllm.checks import as_checked_array
from gpllm.errors import InputError, ShapeError

Array = jax.Array

#: The multiplier of the standard error in reported intervals (the paper's "± 1.96 SE").
Z95 = 1.96

#: How many units of roundoff (relative to the profiles' scale) a delta's spread may
#: span and still count as constant (module docstring). The mean of N ~ 1e3 rows
#: computed by XLA and by NumPy differs by ~0.6 sqrt(N) ulps (22 at N = 1400, in
#: float64), which 256 covers up to N ~ 1e5; it is 6e-14 of the scale in float64 and
#: 3e-5 in float32, far below any delta a model means.
ROUNDING_ULPS = 256


class PerturbationMetrics(NamedTuple):
    """The four metrics per test perturbation, each (M,), plus undefined flags.

    undefined_de / undefined_all: (M,) bool, True where the Pearson correlation
    was undefined (a constant side) and is reported as 0.
    """

    pearson_de: Array
    pearson_all: Array
    mae_de: Array
    mae_all: Array
    undefined_de: Array
    undefined_all: Array
    mse_de: Array  # mean squared error over the top-20 DE genes (GEARS selects models by it)
    mse_all: Array


def pearson_rows(a: Array, b: Array, a_tol: Array | float = 0.0, b_tol: Array | float = 0.0) -> tuple[Array, Array]:
    """Row-wise Pearson correlation of a (M, K) and b (M, K) -> (r (M,), undefined (M,)).

    r_m = sum_k (a_mk - a_m.)(b_mk - b_m.) / sqrt(sum_k (a_mk - a_m.)^2 sum_k (b_mk - b_m.)^2),
    set to 0 where a row of a (or b) is constant, i.e. its max - min is <= a_tol
    (b_tol), scalars or (M,); then ``undefined`` is True.
    """
    undefined = (jnp.ptp(a, axis=1) <= a_tol) | (jnp.ptp(b, axis=1) <= b_tol)
    ac = a - a.mean(axis=1, keepdims=True)
    bc = b - b.mean(axis=1, keepdims=True)
    denom = jnp.sqrt(jnp.sum(ac * ac, axis=1) * jnp.sum(bc * bc, axis=1))
    r = jnp.sum(ac * bc, axis=1) / jnp.where(undefined, 1.0, denom)
    return jnp.where(undefined, 0.0, jnp.clip(r, -1.0, 1.0)), undefined


def perturbation_metrics(
    Y_true: ArrayLike,
    Y_pred: ArrayLike,
    *,
    reference: ArrayLike,
    de: ArrayLike,
) -> PerturbationMetrics:
    """GEARS' metrics for M test perturbations.

    Y_true, Y_pred: (M, G) measured and predicted expression (not deltas).
    reference: (G,) (or (M, G)) profile the deltas are taken against: ctrl for
        GEARS' metrics, the mean training profile for Systema's.
    de: (M, K) int gene indices of each perturbation's top-K DE genes (K = 20).
    Raises NonFiniteError for NaN/inf, ShapeError for mismatched shapes,
    InputError for DE indices out of range or repeated within a row.
    """
    Y_true, Y_pred, reference, de, (eps_true, eps_pred) = _check_metric_inputs(Y_true, Y_pred, reference, de)
    return unchecked_perturbation_metrics(Y_true, Y_pred, reference, de, eps_true, eps_pred)


@jax.jit
def unchecked_perturbation_metrics(
    Y_true: Array, Y_pred: Array, reference: Array, de: Array, eps_true: float, eps_pred: float
) -> PerturbationMetrics:
    """:func:`perturbation_metrics` on inputs already checked and cast to one float dtype;
    ``eps_true`` / ``eps_pred``: the unit roundoff of each delta's side (:func:`roundoff`)."""
    reference = jnp.broadcast_to(reference, Y_true.shape)

    def take(x):
        return jnp.take_along_axis(x, de, axis=1)

    # The DE genes' metrics from the (M, K) gathered inputs: the same elementwise values as
    # gathering the (M, G) deltas, and XLA fuses the two gene sets' programs ~3x faster so.
    r_all, undef_all, mae_all, mse_all = _gene_set_metrics(Y_true, Y_pred, reference, eps_true, eps_pred)
    r_de, undef_de, mae_de, mse_de = _gene_set_metrics(take(Y_true), take(Y_pred), take(reference), eps_true, eps_pred)
    return PerturbationMetrics(
        pearson_de=r_de,
        pearson_all=r_all,
        mae_de=mae_de,
        mae_all=mae_all,
        undefined_de=undef_de,
        undefined_all=undef_all,
        mse_de=mse_de,
        mse_all=mse_all,
    )


def _gene_set_metrics(
    Y_true: Array, Y_pred: Array, reference: Array, eps_true: float, eps_pred: float
) -> tuple[Array, Array, Array, Array]:
    """Pearson of the deltas, its undefined flag, MAE and MSE (each (M,)) of rows over one gene set:
    Y_true, Y_pred, reference (M, K) the set's columns."""
    abs_err = jnp.abs(Y_pred - Y_true)
    # Elementwise rounding scale of x - reference: a row whose spread is within
    # its max over the gene set is constant (see the module docstring).
    noise_hat = ROUNDING_ULPS * eps_pred * jnp.maximum(jnp.abs(Y_pred), jnp.abs(reference))
    noise = ROUNDING_ULPS * eps_true * jnp.maximum(jnp.abs(Y_true), jnp.abs(reference))
    r, undefined = pearson_rows(Y_pred - reference, Y_true - reference, noise_hat.max(axis=1), noise.max(axis=1))
    return r, undefined, abs_err.mean(axis=1), (abs_err**2).mean(axis=1)


def _check_metric_inputs(
    Y_true: ArrayLike, Y_pred: ArrayLike, reference: ArrayLike, de: ArrayLike
) -> tuple[Array, Array, Array, Array, tuple[float, float]]:
    """The inputs checked and cast to one float dtype, and the unit roundoff of the
    deltas' two sides, (x - r, x_hat - r), each from the coarser of its inputs' own dtypes."""
    Y_true = as_checked_array(Y_true, "Y_true", ndim=2)
    Y_pred = as_checked_array(Y_pred, "Y_pred", ndim=2)
    if Y_true.shape != Y_pred.shape:
        raise ShapeError(f"Y_true {Y_true.shape} and Y_pred {Y_pred.shape} must have the same shape")
    m, g = Y_true.shape
    if m < 1 or g < 2:
        raise ShapeError(f"Y_true {Y_true.shape}: need at least 1 perturbation and 2 genes")
    # (G,) or (M, G): take the rank it has, if it is one of those two.
    reference = as_checked_array(reference, "reference", ndim=2 if np.ndim(reference) == 2 else 1)
    if reference.shape not in ((g,), (m, g)):
        raise ShapeError(f"reference {reference.shape} must be ({g},) or ({m}, {g}) to match Y_true")
    de = as_checked_array(de, "de", ndim=2, integer=True)
    if de.shape[0] != m or de.shape[1] < 2:
        raise ShapeError(f"de {de.shape} must be ({m}, K) with K >= 2 DE genes per perturbation")
    de_np = np.asarray(de)
    if de_np.min() < 0 or de_np.max() >= g:
        row = int(np.argwhere((de_np < 0) | (de_np >= g))[0, 0])
        raise InputError(f"de {de.shape}: row {row} holds gene indices outside [0, {g})")
    sorted_de = np.sort(de_np, axis=1)
    repeated = np.any(sorted_de[:, 1:] == sorted_de[:, :-1], axis=1)
    if repeated.any():
        raise InputError(
            f"de {de.shape}: {int(repeated.sum())} row(s) repeat a gene index, first row {int(np.argmax(repeated))}"
        )
    dtype = jnp.result_type(Y_true.dtype, Y_pred.dtype, reference.dtype)
    eps = (roundoff(Y_true, reference), roundoff(Y_pred, reference))
    return Y_true.astype(dtype), Y_pred.astype(dtype), reference.astype(dtype), de, eps


def roundoff(*arrays: ArrayLike) -> float:
    """The unit roundoff (eps) of the coarsest float dtype among ``arrays``."""
    return max(float(jnp.finfo(a.dtype).eps) for a in arrays)


#: Nominal levels of the central predictive intervals whose coverage is scored: ten,
#: for a reliability diagram, with the 50% and 90% intervals among them.
COVERAGE_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


class PredictiveScores(NamedTuple):
    """Scores of a Gaussian predictive distribution N(mu_g, v_g) per gene, averaged over
    the genes scored, per test perturbation.

    nll: (M,) mean of -log N(x_g | mu_g, v_g).
    crps: (M,) mean continuous ranked probability score (closed form, lower is better).
    coverage: (M, L) fraction of genes whose measured value lies in the central
        interval mu_g +- z_l sqrt(v_g) of nominal level l, for each of the L ``levels``.
    """

    nll: Array
    crps: Array
    coverage: Array


def predictive_scores(
    Y_true: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    *,
    levels: Sequence[float] = COVERAGE_LEVELS,
    genes: ArrayLike | None = None,
) -> PredictiveScores:
    """NLL, CRPS and central-interval coverage for M test perturbations.

    Y_true, mean: (M, G); var: (M,) shared by a row's genes, or (M, G); > 0.
    genes: (M, K) int, score only these genes of each row (e.g. its top-20 DE
    genes); None scores all G. With z = (x - mu) / sigma:

        nll  = log(2 pi v) / 2 + z^2 / 2
        crps = sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)]    (Gneiting & Raftery 2007)
        inside at level l:  |z| <= Phi^{-1}(1/2 + l/2)

    Raises NonFiniteError for NaN/inf, ShapeError for mismatched shapes,
    InputError for a variance <= 0, a level outside (0, 1) or gene indices out of range.
    """
    Y_true = as_checked_array(Y_true, "Y_true", ndim=2)
    mean = as_checked_array(mean, "mean", ndim=2)
    var = as_checked_array(var, "var", ndim=2 if np.ndim(var) == 2 else 1)
    m, g = Y_true.shape
    if mean.shape != Y_true.shape or var.shape not in ((m,), (m, g)):
        raise ShapeError(
            f"Y_true {Y_true.shape}, mean {mean.shape} and var {var.shape} must be (M, G), (M, G) and (M,) or (M, G)"
        )
    if not bool(jnp.all(var > 0)):
        raise InputError(f"var {var.shape} must be > 0; {int(jnp.sum(var <= 0))} value(s) are not")
    levels = tuple(float(level) for level in levels)
    if not levels or not all(0 < level < 1 for level in levels):
        raise InputError(f"levels must be in (0, 1), not {levels!r}")
    dtype = jnp.result_type(Y_true.dtype, mean.dtype, var.dtype)
    Y_true, mean = Y_true.astype(dtype), mean.astype(dtype)
    var = jnp.broadcast_to(var[:, None] if var.ndim == 1 else var, (m, g)).astype(dtype)
    if genes is not None:
        genes = as_checked_array(genes, "genes", ndim=2, integer=True)
        if genes.shape[0] != m:
            raise ShapeError(f"genes {genes.shape} must have one row per test perturbation ({m})")
        if bool(jnp.any((genes < 0) | (genes >= g))):
            raise InputError(f"genes {genes.shape} holds indices outside [0, {g})")
        Y_true, mean, var = (jnp.take_along_axis(x, genes, axis=1) for x in (Y_true, mean, var))
    return unchecked_predictive_scores(Y_true, mean, var, interval_z(levels, dtype))


def interval_z(levels: Sequence[float], dtype) -> Array:
    """(L,) z_l = Phi^{-1}(1/2 + l/2): the half-width of the central interval of level l, in sigmas."""
    return jnp.asarray([NormalDist().inv_cdf(0.5 + level / 2) for level in levels], dtype)


@jax.jit
def unchecked_predictive_scores(Y_true: Array, mean: Array, var: Array, z_levels: Array) -> PredictiveScores:
    """:func:`predictive_scores` on checked inputs of one float dtype: Y_true, mean, var all
    (M, G) (the genes already chosen), z_levels (L,) from :func:`interval_z`."""
    sigma = jnp.sqrt(var)
    z = (Y_true - mean) / sigma
    nll = 0.5 * jnp.log(2 * jnp.pi * var) + 0.5 * z * z
    return PredictiveScores(
        nll.mean(axis=1),
        gaussian_crps(z, sigma).mean(axis=1),
        coverage_of(jnp.abs(z), z_levels),
    )


def coverage_of(abs_z: Array, z_levels: Array) -> Array:
    """(M, L) fraction of each row of abs_z (M, K) with |z| <= z_l, for each of z_levels (L,), in
    abs_z's dtype.

    As one count per entry rather than L comparisons reduced over K (~5x faster on CPU):
    b = #{l : |z| > z_(l)} over the sorted levels, so |z| <= z_(l) exactly when b <= l, and
    each level's count is a prefix sum of the histogram of b (exact integers, so the same
    fractions). A NaN |z| falls in no interval.
    """
    n_levels = z_levels.shape[0]
    order = jnp.argsort(z_levels)
    below = jnp.sum(abs_z[..., None] > z_levels[order], axis=-1, dtype=jnp.int32)
    below = jnp.where(jnp.isnan(abs_z), n_levels, below)
    counts = jax.vmap(lambda row: jnp.bincount(row, length=n_levels + 1))(below)
    inside = jnp.zeros((abs_z.shape[0], n_levels), counts.dtype).at[:, order].set(jnp.cumsum(counts, axis=1)[:, :-1])
    return inside.astype(abs_z.dtype) / abs_z.shape[1]


def gaussian_crps(z: Array, sigma: Array) -> Array:
    """CRPS of N(mu, sigma^2) at x, from z = (x - mu) / sigma: elementwise, any shape.

    CRPS = int (F(y) - 1{y >= x})^2 dy = sigma [z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi)],
    with 2 Phi(z) - 1 = erf(z / sqrt(2)): one erf, where ``ndtr`` evaluates both erf and erfc in
    float64 (~4x the time), and no cancellation near z = 0.
    """
    phi = jnp.exp(-0.5 * z * z) / jnp.sqrt(2 * jnp.pi)
    return sigma * (z * jax.lax.erf(z * np.sqrt(0.5)) + 2 * phi - 1 / jnp.sqrt(jnp.pi))


def variance_scale(residual: ArrayLike, var: ArrayLike) -> float:
    """The recalibration factor s = mean(r^2 / v) of held-out residuals r (N, G) and their
    predictive variances v, (N,) or (N, G), > 0: a model whose variances are right on
    average has s ~ 1, and s v makes them so on these points.

    Fitted on training folds only (a model's leave-one-out predictions), it is
    applied to that fold's test variances.
    """
    residual = as_checked_array(residual, "held-out residual", ndim=2)
    var = as_checked_array(var, "held-out var", ndim=2 if np.ndim(var) == 2 else 1)
    n, g = residual.shape
    if var.shape not in ((n,), (n, g)):
        raise ShapeError(f"held-out var {var.shape} must be ({n},) or ({n}, {g}) to match its residuals")
    if not bool(jnp.all(var > 0)):
        raise InputError(f"held-out var {var.shape} must be > 0; {int(jnp.sum(var <= 0))} value(s) are not")
    var = var[:, None] if var.ndim == 1 else var
    return float(unchecked_variance_scale(residual, var.astype(residual.dtype)))


@jax.jit
def unchecked_variance_scale(residual: Array, var: Array) -> Array:
    """:func:`variance_scale` on checked inputs of one dtype, var (N, G) or (N, 1): a 0-d array."""
    return jnp.mean(residual * residual / var)


class SplitSummary(NamedTuple):
    """A metric summarised across splits.

    mean: mean over splits of the per-split mean over test perturbations.
    half_width: 1.96 * SE, SE = std(split means, ddof=1) / sqrt(n_splits)
        (NaN when there is a single split).
    n_splits: number of splits; split_means: (n_splits,) in sorted split order.
    """

    mean: float
    half_width: float
    n_splits: int
    split_means: np.ndarray


def summarize_over_splits(values: ArrayLike, split: ArrayLike) -> SplitSummary:
    """Per-perturbation values (n,) labelled by split (n,) -> mean +- 1.96 SE across splits.

    Each split's perturbations are averaged first, then the split means are
    averaged: the paper's "mean and 1.96 standard error across splits".
    """
    values = np.asarray(as_checked_array(values, "values", ndim=1))
    split = np.asarray(split)
    if split.shape != values.shape:
        raise ShapeError(f"split {split.shape} must label each of values {values.shape}")
    if values.size == 0:
        raise InputError("values (0,) is empty: nothing to summarise")
    _, which = np.unique(split, return_inverse=True)
    split_means = np.bincount(which, weights=values) / np.bincount(which)
    n = split_means.size
    se = split_means.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    return SplitSummary(float(split_means.mean()), float(Z95 * se), n, split_means)

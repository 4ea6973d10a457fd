"""What a design simulation shows: learning curves over repeats, and measurements to a target.

Learning curve: per acquisition and number measured, the mean of a metric
over repeats and a band of 1.96 standard errors across repeats (the paper's
convention across splits). Measurements to a target: the Pearson top-20 DE
that the reference acquisition (random) reaches at the full budget, averaged
over repeats, is the yardstick; for each acquisition, the fewest measurements
at which its mean curve reaches a fraction (90%, 95%) of it, or null where it
never does within the budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from gpllm.errors import InputError
from gpllm.evaluate.metrics import Z95

CURVE_METRICS = ("pearson_de", "mae_de", "strong_found")
FRACTIONS = (0.9, 0.95)
NOT_REACHED = "not reached"


def check_results(frame: pl.DataFrame, metrics: Sequence[str]) -> None:
    """InputError naming the missing columns, or an empty frame."""
    needed = ["acquisition", "repeat", "n_measured", *metrics]
    missing = [c for c in needed if c not in frame.columns]
    if missing or frame.height == 0:
        raise InputError(
            f"design results need rows with columns {needed}; "
            + (f"missing {missing}" if missing else "the frame is empty")
        )


def learning_curves(results: pl.DataFrame, metrics: Sequence[str] = CURVE_METRICS) -> pl.DataFrame:
    """One row per (acquisition, n_measured): ``<metric>`` (mean over repeats), ``<metric>_hw``
    (1.96 SE across repeats; null with one repeat) and ``repeats``; acquisitions in first-seen order."""
    check_results(results, metrics)
    order = results["acquisition"].unique(maintain_order=True)
    stats = [
        e for m in metrics for e in (pl.col(m).mean(), (Z95 * pl.col(m).std(ddof=1) / pl.len().sqrt()).alias(f"{m}_hw"))
    ]
    curves = results.group_by("acquisition", "n_measured").agg(*stats, pl.len().alias("repeats"))
    rank = pl.col("acquisition").replace_strict(order, range(len(order)), return_dtype=pl.Int64)
    return curves.sort(rank, "n_measured")


def measurements_to_reach(
    results: pl.DataFrame,
    *,
    reference: str = "random",
    fractions: Sequence[float] = FRACTIONS,
    metric: str = "pearson_de",
) -> pl.DataFrame:
    """Per acquisition, the fewest measurements at which the mean ``metric`` (higher is better)
    reaches each fraction of ``reference``'s mean at its largest number measured.

    Columns: acquisition, ``n_to_90%``... (Int64, null where not reached within the
    budget), ``<metric>_at_budget`` (mean at the largest number measured), and the
    ``target_90%``... values. InputError if ``reference`` is not in the results.
    """
    curves = learning_curves(results, [metric])
    if reference not in curves["acquisition"].to_list():
        raise InputError(
            f"the table compares with {reference!r}, which the results do not hold "
            f"(acquisitions: {curves['acquisition'].unique(maintain_order=True).to_list()})"
        )
    ref = curves.filter(pl.col("acquisition") == reference)
    ref_final = ref.sort("n_measured")[metric][-1]
    columns = []
    for f in fractions:
        label = f"{round(100 * f)}%"
        target = f * ref_final
        reached = pl.when(pl.col(metric) >= target).then(pl.col("n_measured"))
        columns += [reached.min().alias(f"n_to_{label}"), pl.lit(target).alias(f"target_{label}")]
    final = pl.col(metric).sort_by("n_measured").last().alias(f"{metric}_at_budget")
    table = curves.group_by("acquisition", maintain_order=True).agg(*columns, final)  # curves' order
    counts = [c for c in table.columns if c.startswith("n_to_")]
    targets = [c for c in table.columns if c.startswith("target_")]
    return table.select("acquisition", *counts, f"{metric}_at_budget", *targets)


def printable(table: pl.DataFrame) -> pl.DataFrame:
    """The table with counts as text: "not reached" for null, means to 3 decimals."""
    return table.with_columns(
        *[pl.col(c).cast(pl.String).fill_null(NOT_REACHED) for c in table.columns if c.startswith("n_to_")],
        *[pl.col(c).round(3) for c in table.columns if table[c].dtype == pl.Float64],
    )

"""Aggregation of the sweep's results and Table 1 / S1.

The results frame has one row per (screen, model, embedding, size, fold, pert)
with per-perturbation metrics (see :data:`REQUIRED_COLUMNS`). For each
configuration c = (screen, model, embedding, size) and metric, with k folds
and T_f test perturbations in fold f:

    m_f  = 1/T_f sum_p value_fp                    (per-fold mean)
    mean = 1/k sum_f m_f                           (mean of fold means)
    half_width = 1.96 * std(m_1..m_k, ddof=1) / sqrt(k)   (NaN when k = 1)

computed by :func:`gpllm.evaluate.metrics.summarize_over_splits` for each
configuration, so tables and figures use exactly the evaluation's estimator.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import polars as pl

from gpllm.atomic import atomic_write, write_text
from gpllm.errors import InputError, NonFiniteError
from gpllm.evaluate.metrics import summarize_over_splits
from gpllm.evaluate.rows import CALIBRATION_COLUMNS, RECAL, VAR_SCALE
from gpllm.report.labels import (
    HIGHER_IS_BETTER,
    METRIC_HEADERS,
    ModelKey,
    model_label,
    paper_table_name,
    row_order,
    screen_description,
)

#: A configuration: one line of a figure, one row of a table (per size).
CONFIG: tuple[str, ...] = ("screen", "model", "embedding", "size")
#: What identifies a row of the results frame.
ROW_ID: tuple[str, ...] = (*CONFIG, "fold", "pert")
#: Metrics of the predictive variance (the sweep's calibration columns, raw and
#: recalibrated, and the recalibration factor): NaN (or null) for models without one.
VARIANCE_METRICS: tuple[str, ...] = (
    *CALIBRATION_COLUMNS,
    VAR_SCALE,
    *(column + RECAL for column in CALIBRATION_COLUMNS),
)
#: Every metric column the sweep may write, in reporting order.
METRICS: tuple[str, ...] = (
    "pearson_de",
    "pearson_all",
    "mae_de",
    "mae_all",
    "pearson_de_meanref",
    *VARIANCE_METRICS,
)
#: Table 1's columns.
TABLE_METRICS: tuple[str, ...] = ("pearson_de", "pearson_all", "mae_de", "mae_all")
#: The flag saying a correlation was undefined and reported as 0 (GEARS' convention).
UNDEFINED_FLAGS: dict[str, str] = {"pearson_de": "undefined_de", "pearson_all": "undefined_all"}
#: Columns the report needs; the other metrics are summarised when present.
REQUIRED_COLUMNS: tuple[str, ...] = (
    *ROW_ID,
    *TABLE_METRICS,
    *UNDEFINED_FLAGS.values(),
    "effect_size",
)
#: The paper's training size for Table 1 / S1 and Figure 3.
PREFERRED_SIZE = 1400
#: Decimals shown in tables (the best value is judged at this precision).
DECIMALS = 3


# --------------------------------------------------------------------------- checks


def check_results(results: pl.DataFrame, columns: Iterable[str], what: str) -> None:
    """InputError unless ``results`` is a non-empty polars frame with ``columns``.

    Also rejects nulls in the identifying columns, since a null screen or model
    would silently vanish from every group-by.
    """
    if not isinstance(results, pl.DataFrame):
        raise InputError(f"{what}: results must be a polars DataFrame, not {type(results).__name__}")
    columns = list(dict.fromkeys(columns))
    missing = [c for c in columns if c not in results.columns]
    if missing:
        raise InputError(
            f"{what}: the results frame lacks column(s) {', '.join(missing)} "
            f"(it has: {', '.join(results.columns) or 'none'})"
        )
    if results.height == 0:
        raise InputError(f"{what}: the results frame is empty (0 rows)")
    ids = [c for c in ROW_ID if c in columns]
    nulls = {c: n for c, n in results.select(pl.col(ids).null_count()).row(0, named=True).items() if n}
    if nulls:
        raise InputError(f"{what}: null values in identifying column(s) {nulls}")


def _check_unique_rows(results: pl.DataFrame, what: str) -> None:
    """A repeated (screen, model, embedding, size, fold, pert) would be counted twice."""
    dup = results.group_by(ROW_ID).len().filter(pl.col("len") > 1)
    if dup.height:
        first = dup.row(0, named=True)
        raise InputError(
            f"{what}: {dup.height} (screen, model, embedding, size, fold, pert) row(s) appear "
            f"more than once, e.g. { ({k: first[k] for k in ROW_ID}) } x{first['len']}"
        )


# ---------------------------------------------------------------------- aggregation


def summarize(results: pl.DataFrame, metrics: Sequence[str] | None = None) -> pl.DataFrame:
    """Tidy summary: one row per (screen, model, embedding, size, metric).

    results: the sweep's frame (R rows). metrics: columns to summarise; None
    means every column of :data:`METRICS` the frame has. Null values, and NaN
    in :data:`VARIANCE_METRICS` (the sweep writes NaN NLL for models without a
    variance), are left out, so such a configuration has no row for that
    metric; NaN or inf in another metric is a bug upstream: InputError naming
    the configuration.

    Returns columns screen, model, embedding, size, metric, mean, half_width
    (1.96 SE across folds, NaN with one fold), n_folds, n_perts (test
    perturbations over all folds) and n_undefined (correlations counted as 0;
    null for metrics without an undefined flag), sorted by configuration and
    metric order.
    """
    check_results(results, ROW_ID, "summarize")
    if metrics is None:
        metrics = [m for m in METRICS if m in results.columns]
        if not metrics:
            raise InputError(f"summarize: the results frame has none of the metric columns {METRICS}")
    metrics = list(dict.fromkeys(metrics))
    flags = [UNDEFINED_FLAGS[m] for m in metrics if m in UNDEFINED_FLAGS]
    check_results(results, [*ROW_ID, *metrics, *flags], "summarize")
    _check_unique_rows(results, "summarize")

    # Long format: (row id, metric, value, undefined) so one group-by serves all metrics.
    long = pl.concat(
        [
            results.select(
                *ROW_ID,
                metric=pl.lit(m),
                value=_values(m),
                undefined=pl.col(UNDEFINED_FLAGS[m]) if m in UNDEFINED_FLAGS else pl.lit(None, pl.Boolean),
            )
            for m in metrics
        ]
    ).drop_nulls("value")
    groups = long.group_by(*CONFIG, "metric").agg("value", "fold", n_undefined=pl.col("undefined").sum())
    # The estimator itself is summarize_over_splits', called once per
    # configuration and metric so the report can never drift from it.
    stats = [_over_folds(g) for g in groups.iter_rows(named=True)]
    order = {m: i for i, m in enumerate(metrics)}
    return (
        groups.drop("value", "fold")
        .with_columns(
            pl.DataFrame(stats, schema=_STATS_SCHEMA, orient="row"),
            n_undefined=pl.when(pl.col("metric").is_in(list(UNDEFINED_FLAGS)))
            .then(pl.col("n_undefined"))
            .otherwise(None),
        )
        .sort(*CONFIG, pl.col("metric").replace_strict(order, return_dtype=pl.Int32))
        .select(*CONFIG, "metric", "mean", "half_width", "n_folds", "n_perts", "n_undefined")
    )


_STATS_SCHEMA = {"mean": pl.Float64, "half_width": pl.Float64, "n_folds": pl.Int64, "n_perts": pl.Int64}


def _over_folds(group: dict) -> tuple[float, float, int, int]:
    """(mean, half_width, n_folds, n_perts) of one configuration's metric values."""
    try:
        s = summarize_over_splits(np.asarray(group["value"], dtype=np.float64), np.asarray(group["fold"]))
    except NonFiniteError as err:  # NaN in a metric other than NLL / coverage: a bug upstream
        where = ", ".join(f"{k}={group[k]!r}" for k in (*CONFIG, "metric"))
        raise InputError(f"summarize: non-finite values for {where}: {err}") from None
    return s.mean, s.half_width, s.n_splits, len(group["value"])


def _values(metric: str) -> pl.Expr:
    value = pl.col(metric).cast(pl.Float64)
    return value.fill_nan(None) if metric in VARIANCE_METRICS else value


def choose_size(sizes: Iterable[int], size: int | None = None) -> tuple[int, str]:
    """The training size to report and a sentence saying why.

    size given: it, if present (else InputError). None: the paper's 1400 if
    present, else the largest size present.
    """
    present = sorted({int(s) for s in sizes})
    if not present:
        raise InputError("no training sizes in the results")
    if size is not None:
        if int(size) not in present:
            raise InputError(f"training size {size} is not in the results (sizes: {present})")
        return int(size), "Training size as requested."
    if PREFERRED_SIZE in present:
        return PREFERRED_SIZE, "The paper's size."
    return present[-1], f"The largest size in these results; the paper's {PREFERRED_SIZE} was not run."


def screens(results: pl.DataFrame) -> list[str]:
    """Screens in the results, K562 and RPE1 first (the paper's order), then by name."""
    check_results(results, ["screen"], "screens")
    names = results.get_column("screen").unique().to_list()
    paper = [s for s in ("K562", "RPE1") if s in names]
    return paper + sorted(set(names) - set(paper))


def keys_frame(keys: Iterable[ModelKey]) -> pl.DataFrame:
    """(model, embedding, label, order) for the given configurations, order = paper row order."""
    keys = sorted(set(keys), key=row_order)
    return pl.DataFrame(
        {
            "model": [k.model for k in keys],
            "embedding": [k.embedding for k in keys],
            "label": [model_label(*k) for k in keys],
            "order": list(range(len(keys))),
        },
        schema={"model": pl.String, "embedding": pl.String, "label": pl.String, "order": pl.Int64},
    )


# ------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class MetricTable:
    """Table 1 / S1 for one screen at one training size.

    rows: one per configuration in the paper's order, columns label, model,
        embedding, ``<metric>_mean``, ``<metric>_hw`` (1.96 SE) and
        ``<metric>_best`` (bool: best value at the shown precision, ties all
        best) per metric, n_folds, n_perts, ``n_undefined_de`` and
        ``n_undefined_all``.
    size_note: why this size was chosen (see :func:`choose_size`).
    """

    screen: str
    size: int
    size_note: str
    metrics: tuple[str, ...]
    rows: pl.DataFrame

    @property
    def caption(self) -> str:
        """The paper's caption, plus how the interval is computed and over how much."""
        folds = span(self.rows.get_column("n_folds"))
        perts = span(self.rows.get_column("n_perts"))
        return (
            f"{paper_table_name(self.screen)}: Model performance metrics ({self.size} training "
            f"perturbations, {screen_description(self.screen)}). {self.size_note} "
            f"Mean ± 1.96 SE across {folds} CV folds ({perts} test perturbations per model); "
            f"{', '.join(METRIC_HEADERS[m] for m in self.metrics)}: Pearson correlation of Δ and MAE "
            "over the top 20 DE genes and over all genes. Best value per column in bold."
        )

    @property
    def footnote(self) -> str:
        """How many correlations were undefined (a constant Δ) and counted as 0."""
        parts, culprits = [], []
        for metric, flag, what in (
            ("pearson_de", "n_undefined_de", "top-20"),
            ("pearson_all", "n_undefined_all", "all-gene"),
        ):
            if metric not in self.metrics:
                continue
            parts.append(f"{self.rows[flag].sum()} of {self.rows['n_perts'].sum()} {what}")
            culprits += [f"{r['label']} {r[flag]} {what}" for r in self.rows.iter_rows(named=True) if r[flag]]
        if not parts:
            return ""
        detail = f" ({'; '.join(culprits)})" if culprits else ""
        return (
            "Undefined correlations (a constant Δ, e.g. the control baseline's) are counted as 0, "
            f"as in GEARS: {' and '.join(parts)} correlations{detail}."
        )


def span(values: pl.Series) -> str:
    """``"5"`` when every count is 5, ``"3–5"`` when they range from 3 to 5."""
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


def make_table(
    results: pl.DataFrame,
    screen: str,
    *,
    size: int | None = None,
    metrics: Sequence[str] = TABLE_METRICS,
) -> MetricTable:
    """Table 1 / S1: every configuration of ``screen`` at one training size.

    size: None picks 1400 if present, else the largest size present for the
    screen (:func:`choose_size`). Rows are in the paper's order
    (:func:`gpllm.report.labels.row_order`). Best per column: the largest
    correlation / smallest error after rounding to 3 decimals.
    """
    metrics = tuple(metrics)
    flags = [UNDEFINED_FLAGS[m] for m in metrics if m in UNDEFINED_FLAGS]
    check_results(results, [*ROW_ID, *metrics, *flags], f"Table ({screen})")
    results = results.filter(pl.col("screen") == screen)
    if results.height == 0:
        raise InputError(f"Table: no results for screen {screen!r}")
    size, note = choose_size(results.get_column("size").unique().to_list(), size)
    summary = summarize(results.filter(pl.col("size") == size), metrics)

    by_metric = [
        expr.filter(pl.col("metric") == m).first().alias(f"{m}_{suffix}")
        for m in metrics
        for expr, suffix in ((pl.col("mean"), "mean"), (pl.col("half_width"), "hw"))
    ]
    undefined = [
        pl.col("n_undefined").filter(pl.col("metric") == m).first().fill_null(0).alias(f"n_{flag}")
        for m, flag in UNDEFINED_FLAGS.items()
        if m in metrics
    ]
    wide = summary.group_by("model", "embedding").agg(
        *by_metric,
        *undefined,
        n_folds=pl.col("n_folds").max(),
        n_perts=pl.col("n_perts").max(),
    )
    labels = keys_frame(ModelKey(*k) for k in wide.select("model", "embedding").iter_rows())
    rows = wide.join(labels, on=["model", "embedding"]).sort("order").drop("order")
    rows = rows.with_columns(_best(m) for m in metrics)
    head = ["label", "model", "embedding"]
    rows = rows.select(*head, pl.exclude(*head))
    return MetricTable(screen=screen, size=size, size_note=note, metrics=metrics, rows=rows)


def _best(metric: str) -> pl.Expr:
    """Bool column: this row holds the best value of ``metric`` at the shown precision."""
    higher = HIGHER_IS_BETTER.get(metric)
    if higher is None:
        return pl.lit(False).alias(f"{metric}_best")  # no "better" direction (coverage): mark nothing
    # Judged on the rounded value, so entries that read the same are all bold (as in Table S1).
    shown = pl.col(f"{metric}_mean").round(DECIMALS)
    best = shown.max() if higher else shown.min()
    return (shown == best).fill_null(False).alias(f"{metric}_best")


# -------------------------------------------------------------------------- writers


def format_cell(
    mean: float | None, hw: float | None, *, best: bool = False, mark: tuple[str, str] = ("**", "**")
) -> str:
    """``"0.412 ± 0.020"``, the mean wrapped in ``mark`` (open, close) when best; ``—`` when missing."""
    if mean is None:
        return "—"
    m = f"{mean:.{DECIMALS}f}"
    h = "n/a" if hw is None or hw != hw else f"{hw:.{DECIMALS}f}"  # NaN: one fold, no SE
    return f"{mark[0]}{m}{mark[1]} ± {h}" if best else f"{m} ± {h}"


def _cells(table: MetricTable, mark: tuple[str, str]) -> list[list[str]]:
    """Rows of [label, cell per metric] with best means wrapped in ``mark``."""
    return [
        [row["label"]]
        + [format_cell(row[f"{m}_mean"], row[f"{m}_hw"], best=row[f"{m}_best"], mark=mark) for m in table.metrics]
        for row in table.rows.iter_rows(named=True)
    ]


def to_markdown(table: MetricTable) -> str:
    """Caption, a GitHub-markdown table (best in bold), then the undefined-correlation note."""
    header = ["Model", *(METRIC_HEADERS[m] for m in table.metrics)]
    esc = lambda s: s.replace("|", r"\|")  # noqa: E731  (a label with | would split the cell)
    lines = [
        f"**{table.caption}**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(table.metrics)) + "|",
        *("| " + " | ".join(esc(c) for c in row) + " |" for row in _cells(table, ("**", "**"))),
    ]
    if table.footnote:
        lines += ["", table.footnote]
    return "\n".join(lines) + "\n"


def write_markdown(table: MetricTable, path: str | PathLike) -> Path:
    """Write :func:`to_markdown` to ``path`` (parents created); returns the path."""
    return write_text(path, to_markdown(table))


def write_csv(table: MetricTable, path: str | PathLike) -> Path:
    """Raw numbers: screen, size, label, model, embedding, ``<metric>_mean``, ``<metric>_hw``, counts."""
    rows = table.rows.select(
        pl.lit(table.screen).alias("screen"), pl.lit(table.size).alias("size"), pl.exclude("^.*_best$")
    )
    return atomic_write(path, lambda tmp: rows.write_csv(tmp))


def rich_table(table: MetricTable, *, bold: bool = True):
    """The table as a ``rich.table.Table`` for ``Console.print``.

    Best values are bold, or with ``bold=False`` marked ``*0.412*`` so they
    survive a plain-text rendering.
    """
    from rich.markup import escape
    from rich.table import Table

    out = Table(
        title=escape(table.caption),
        caption=escape(table.footnote) or None,
        title_justify="left",
        caption_justify="left",
    )
    out.add_column("Model")
    for m in table.metrics:
        out.add_column(METRIC_HEADERS[m], justify="right")
    mark = ("[bold]", "[/bold]") if bold else ("*", "*")
    for label, *cells in _cells(table, mark):
        out.add_row(escape(label), *cells)  # cells hold digits and our markup only
    return out


def format_table_for_terminal(table: MetricTable, *, width: int = 110) -> str:
    """Plain text (no colour codes) of :func:`rich_table`, best values marked ``*``."""
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(rich_table(table, bold=False))
    return buf.getvalue()

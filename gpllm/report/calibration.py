"""How well each model's predictive distribution is calibrated: a table and a reliability diagram.

From the sweep's calibration columns (:mod:`gpllm.evaluate.rows`), per screen
at one training size:

- the calibration table (markdown and CSV): NLL, CRPS and the coverage of the
  central 50% and 90% predictive intervals, over all genes and over the top-20
  DE genes, raw and recalibrated (the variance times s, the mean of r^2 / v
  over the model's leave-one-out predictions on its training fold), and s;
  each the mean ± 1.96 SE across folds of the per-perturbation means, as in
  Table 1 (:func:`gpllm.report.tables.make_table`);
- the reliability diagram (PNG): empirical coverage against the nominal level
  of the central interval at ten levels, one line per model, a panel per
  embedding, raw (top row) and recalibrated (bottom row). A calibrated model
  lies on the diagonal; below it, intervals are too narrow (over-confident);
  above it, too wide.

A configuration without a predictive variance, or one that could not be
recalibrated, is named in the table's notes rather than left as a bare gap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gpllm.atomic import write_text
from gpllm.errors import InputError
from gpllm.evaluate.metrics import COVERAGE_LEVELS
from gpllm.evaluate.rows import RECAL, VAR_SCALE, coverage_column
from gpllm.report.figures import DPI, RC, line_style, save
from gpllm.report.labels import (
    EMBEDDINGS,
    METRIC_HEADERS,
    NO_EMBEDDING,
    ModelKey,
    embedding_label,
    file_slug,
    model_label,
    row_order,
    screen_description,
)
from gpllm.report.tables import (
    CONFIG,
    MetricTable,
    check_results,
    choose_size,
    format_cell,
    make_table,
    span,
    write_csv,
)

log = logging.getLogger(__name__)

#: The table's two blocks: the same scores over all genes and over the top-20 DE genes.
_SCORES = ("nll", "crps", "coverage50", "coverage90")
ALL_GENES: tuple[str, ...] = (*_SCORES, *(m + RECAL for m in _SCORES), VAR_SCALE)
DE_GENES: tuple[str, ...] = tuple(f"{m}_de{suffix}" for suffix in ("", RECAL) for m in _SCORES)
#: Columns a results frame needs for the calibration outputs.
RELIABILITY = tuple(coverage_column(level) for level in COVERAGE_LEVELS)
REQUIRED = (*ALL_GENES, *DE_GENES, *RELIABILITY, *(c + RECAL for c in RELIABILITY))


def has_calibration(results: pl.DataFrame) -> bool:
    """Whether ``results`` holds the calibration columns (a run before them does not)."""
    return all(c in results.columns for c in REQUIRED)


def _with_variance(results: pl.DataFrame, column: str) -> pl.DataFrame:
    return results.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())


def calibration_table(results: pl.DataFrame, screen: str, *, size: int | None = None) -> MetricTable:
    """Both blocks' metrics for ``screen`` at ``size`` (default as Table 1: 1400 or the
    largest), one row per configuration with a predictive variance.

    InputError if no configuration of ``screen`` has one.
    """
    check_results(results, [*CONFIG, *REQUIRED], f"calibration table ({screen})")
    scored = _with_variance(results.filter(pl.col("screen") == screen), "nll")
    if scored.height == 0:
        raise InputError(f"calibration table: no model on screen {screen!r} has a predictive variance")
    return make_table(scored, screen, size=size, metrics=(*ALL_GENES, *DE_GENES))


def calibration_notes(results: pl.DataFrame, screen: str, size: int) -> list[str]:
    """What the table leaves out at ``size``: configurations without a predictive variance,
    and those recalibrated on none or only some of their folds (and why)."""
    rows = results.filter((pl.col("screen") == screen) & (pl.col("size") == size))
    folds = rows.group_by("model", "embedding").agg(
        n=pl.col("fold").n_unique(),
        scored=pl.col("fold").filter(pl.col("nll").is_not_nan()).n_unique(),
        recal=pl.col("fold").filter(pl.col(VAR_SCALE).is_not_nan()).n_unique(),
    )

    def label(r: dict) -> str:
        return model_label(r["model"], r["embedding"])

    ordered = sorted(folds.iter_rows(named=True), key=lambda r: row_order(ModelKey(r["model"], r["embedding"])))
    notes = []
    if none := [label(r) for r in ordered if r["scored"] == 0]:
        notes.append(f"No predictive variance, so not in this table: {', '.join(none)}.")
    if never := [label(r) for r in ordered if r["scored"] and r["recal"] == 0]:
        notes.append(
            "Not recalibrated (no leave-one-out predictions on the training folds: the model has no "
            f"`heldout` hook, or too few training points), so its 'recal.' cells are empty: {', '.join(never)}."
        )
    if some := [f"{label(r)} ({r['recal']} of {r['scored']})" for r in ordered if 0 < r["recal"] < r["scored"]]:
        notes.append(f"Recalibrated on some folds only; 'recal.' is the mean over those: {', '.join(some)}.")
    return notes


def calibration_markdown(table: MetricTable, notes: Sequence[str] = ()) -> str:
    """Caption, the all-genes and top-20 DE blocks as GitHub-markdown tables (best NLL and
    CRPS in bold), then ``notes``."""
    caption = (
        f"**Calibration of the predictive distributions ({table.size} training perturbations, "
        f"{screen_description(table.screen)}). {table.size_note} Mean ± 1.96 SE across "
        f"{span(table.rows.get_column('n_folds'))} CV folds of per-perturbation means over genes. NLL and CRPS: "
        "lower is better. Coverage: the fraction of measured values inside the central 50% / 90% "
        "predictive interval; a calibrated model has 0.50 / 0.90, less is over-confident, more "
        "under-confident. 'recal.': the variance times s, the mean of r²/v over the model's "
        "leave-one-out predictions on its training fold (the test fold never enters s).**"
    )
    lines = [caption]
    for title, metrics in (("All genes", ALL_GENES), ("Top 20 DE genes", DE_GENES)):
        header = ["Model", *(METRIC_HEADERS[m].replace(" top 20", "") for m in metrics)]
        lines += [
            "",
            f"*{title}*",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(metrics)) + "|",
        ]
        for row in table.rows.iter_rows(named=True):
            cells = [format_cell(row[f"{m}_mean"], row[f"{m}_hw"], best=row[f"{m}_best"]) for m in metrics]
            lines.append("| " + " | ".join([row["label"].replace("|", r"\|"), *cells]) + " |")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def write_calibration(
    results: pl.DataFrame, out_dir: str | PathLike, *, screen: str, size: int | None = None
) -> dict[str, Path]:
    """calibration_<slug>.md / .csv and reliability_<slug>.png for ``screen`` into ``out_dir``;
    {} (with a log line) when no model of the screen has a predictive variance."""
    if _with_variance(results.filter(pl.col("screen") == screen), "nll").height == 0:
        log.info("%s: no model has a predictive variance; no calibration table or figure", screen)
        return {}
    out = Path(out_dir)
    table = calibration_table(results, screen, size=size)
    notes = calibration_notes(results, screen, table.size)
    slug = file_slug(screen)
    md = out / f"calibration_{slug}.md"
    write_text(md, calibration_markdown(table, notes))
    return {
        f"calibration_{screen}_md": md,
        f"calibration_{screen}_csv": write_csv(table, out / f"calibration_{slug}.csv"),
        f"reliability_{screen}": reliability_figure(
            results, out / f"reliability_{slug}.png", screen=screen, size=table.size
        ),
    }


# ------------------------------------------------------------------- the figure


def reliability_points(results: pl.DataFrame, screen: str, size: int, *, recalibrated: bool = False) -> pl.DataFrame:
    """Long frame (model, embedding, level, coverage): the mean over folds of each
    configuration's per-perturbation coverage at every level, for ``screen`` at ``size``."""
    suffix = RECAL if recalibrated else ""
    rows = results.filter((pl.col("screen") == screen) & (pl.col("size") == size))
    long = pl.concat(
        rows.select("model", "embedding", "fold", level=pl.lit(level), value=pl.col(coverage_column(level) + suffix))
        for level in COVERAGE_LEVELS
    ).filter(pl.col("value").is_not_nan())
    per_fold = long.group_by("model", "embedding", "level", "fold").agg(pl.col("value").mean())
    return per_fold.group_by("model", "embedding", "level").agg(coverage=pl.col("value").mean()).sort("level")


def draw_reliability(results: pl.DataFrame, *, screen: str, size: int | None = None) -> Figure:
    """The reliability diagram of ``screen`` at ``size`` (default as the table's): nominal
    level vs empirical coverage of the central interval, a panel per embedding (baselines,
    which ignore it, in every panel), raw on top and recalibrated below."""
    check_results(results, [*CONFIG, *RELIABILITY, *(c + RECAL for c in RELIABILITY)], f"reliability ({screen})")
    sub = results.filter(pl.col("screen") == screen)
    if sub.height == 0:
        raise InputError(f"reliability diagram: no results for screen {screen!r}")
    size, _ = choose_size(sub.get_column("size").unique().to_list(), size)
    rows = {flag: reliability_points(sub, screen, size, recalibrated=flag) for flag in (False, True)}
    present = {ModelKey(*k) for k in rows[False].select("model", "embedding").unique().iter_rows()}
    embeddings = [e for e in EMBEDDINGS if any(k.embedding == e for k in present)]
    embeddings += sorted({k.embedding for k in present} - set(EMBEDDINGS) - {NO_EMBEDDING})
    panels = embeddings or [NO_EMBEDDING]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(4.0 * len(panels) + 2.5, 8.0), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, len(panels), squeeze=False, sharex=True, sharey=True)
        handles: dict[str, object] = {}
        for row, recalibrated in enumerate((False, True)):
            for ax, embedding in zip(axes[row], panels):
                keys = sorted((k for k in present if k.embedding in (embedding, NO_EMBEDDING)), key=row_order)
                ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
                for key in keys:
                    pts = rows[recalibrated].filter(model=key.model, embedding=key.embedding)
                    if pts.height == 0:
                        continue
                    style = line_style(key)
                    label = model_label(key.model, NO_EMBEDDING)
                    (handle,) = ax.plot(
                        pts["level"],
                        pts["coverage"],
                        color=style.color,
                        linestyle=style.linestyle,
                        marker=style.marker,
                        markersize=4,
                        linewidth=1.5,
                        label=label,
                    )
                    handles.setdefault(label, handle)
                what = "recalibrated" if recalibrated else "raw"
                ax.set_title(f"{embedding_label(embedding) if embedding != NO_EMBEDDING else 'baselines'}: {what}")
                ax.set_xlim(0, 1)
                ax.set_ylim(0, 1)
                ax.set_xticks(np.linspace(0, 1, 6))
            axes[row][0].set_ylabel("Empirical coverage")
        for ax in axes[-1]:
            ax.set_xlabel("Nominal level of the central interval")
        if handles:
            fig.legend(list(handles.values()), list(handles), loc="outside right center", frameon=False)
        fig.suptitle(
            f"Reliability of the predictive intervals ({screen}, {size} training perturbations, "
            "mean over folds; below the diagonal = over-confident)"
        )
    return fig


def reliability_figure(results: pl.DataFrame, path: str | PathLike, *, screen: str, size: int | None = None) -> Path:
    """Draw :func:`draw_reliability` and write it to ``path`` (PNG)."""
    return save(draw_reliability(results, screen=screen, size=size), path)

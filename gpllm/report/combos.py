"""The seen-0/1/2 tables and figure from :func:`gpllm.evaluate.combos.run_combos`' rows.

Per seen category and model: each metric's mean over folds of the per-fold mean
over test pairs, +- 1.96 SE across folds (as Table 1); GEARS' interaction view
as the Spearman correlation of predicted and measured GI magnitude over a
fold's pairs (mean +- 1.96 SE over folds; 0 where undefined, e.g. the additive
baseline's constant sqrt 2) and the interaction-type accuracy (predicted class
== measured class, over pairs whose class is defined); and how many pairs were
tested. Measured magnitudes are pulled low by the singles' own noise (see
:mod:`gpllm.evaluate.combos`), so the class accuracy rewards predicting
"buffering"; the magnitude correlation is free of that common bias. The figure shows Pearson and MAE over the top-20
DE genes per category, one bar per model with its 1.96 SE whisker.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gpllm.atomic import write_bytes_from, write_frame, write_text
from gpllm.errors import InputError
from gpllm.evaluate.metrics import summarize_over_splits

METRICS = ("pearson_de", "pearson_all", "mae_de", "mae_all")
HEADERS = {
    "pearson_de": "Pearson top-20",
    "pearson_all": "Pearson all",
    "mae_de": "MAE top-20",
    "mae_all": "MAE all",
    "interaction_acc": "GI type acc.",
    "magnitude_r": "GI magnitude r",
}
REQUIRED = ("seen", "fold", "model", "pair", *METRICS, "magnitude_true", "magnitude_pred", "class_true", "class_pred")


def _magnitude_r(part: pl.DataFrame) -> float:
    """Spearman r of predicted vs measured GI magnitude over one fold's pairs (0 where undefined)."""
    from scipy.stats import spearmanr

    true, pred = part["magnitude_true"].to_numpy(), part["magnitude_pred"].to_numpy()
    ok = np.isfinite(true) & np.isfinite(pred)
    # constant up to rounding (the additive baseline's sqrt 2 from measured singles): undefined

    def constant(x: np.ndarray) -> bool:
        return bool(np.ptp(x) <= 1e-9 * np.max(np.abs(x)))

    if ok.sum() < 3 or constant(true[ok]) or constant(pred[ok]):
        return 0.0
    return float(spearmanr(true[ok], pred[ok]).statistic)


def _check(results: pl.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in results.columns]
    if missing or results.height == 0:
        raise InputError(f"combos results: {'empty' if not missing else f'missing column(s) {missing}'}")


def seen_table(results: pl.DataFrame) -> pl.DataFrame:
    """One row per (seen, model), in the models' order of appearance: n_pairs, n_folds,
    ``<metric>`` and ``<metric>_hw`` (1.96 SE across folds), interaction_acc (NaN if no
    pair has a defined class)."""
    _check(results)
    order = list(dict.fromkeys(results["model"].to_list()))
    rows = []
    for (seen, model), part in results.group_by(["seen", "model"], maintain_order=True):
        row = {"seen": seen, "model": model, "n_pairs": part.height, "n_folds": part["fold"].n_unique()}
        for m in METRICS:
            s = summarize_over_splits(part[m].to_numpy(), part["fold"].to_numpy())
            row[m], row[f"{m}_hw"] = s.mean, s.half_width
        per_fold = [_magnitude_r(f) for _, f in part.group_by("fold", maintain_order=True)]
        s = summarize_over_splits(np.asarray(per_fold), np.arange(len(per_fold)))
        row["magnitude_r"], row["magnitude_r_hw"] = s.mean, s.half_width
        defined = part.filter(pl.col("class_true") != "n/a")
        row["interaction_acc"] = (
            float((defined["class_true"] == defined["class_pred"]).mean()) if defined.height else float("nan")
        )
        rows.append(row)
    table = pl.DataFrame(rows)
    rank = {m: i for i, m in enumerate(order)}
    return table.with_columns(pl.col("model").replace_strict(rank).alias("_rank")).sort("seen", "_rank").drop("_rank")


def format_seen_table(table: pl.DataFrame) -> str:
    """Markdown, one block per seen category: mean +- 1.96 SE per metric, the interaction accuracy."""
    lines = []
    for seen in sorted(table["seen"].unique().to_list()):
        part = table.filter(pl.col("seen") == seen)
        n = part["n_pairs"].max()
        lines += [
            f"seen {seen} ({n} test pairs over {part['n_folds'].max()} folds)",
            "",
            "| model | " + " | ".join(HEADERS[m] for m in (*METRICS, "magnitude_r", "interaction_acc")) + " |",
            "|---|" + "---:|" * (len(METRICS) + 2),
        ]
        for row in part.iter_rows(named=True):
            cells = [f"{row[m]:.3f} ± {row[f'{m}_hw']:.3f}" for m in (*METRICS, "magnitude_r")]
            acc = row["interaction_acc"]
            cells.append("n/a" if np.isnan(acc) else f"{acc:.2f}")
            lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def draw_seen_figure(table: pl.DataFrame) -> Figure:
    """Pearson and MAE over the top-20 DE genes (rows) per seen category (columns)."""
    seens = sorted(table["seen"].unique().to_list())
    fig = Figure(figsize=(3.8 * len(seens), 6.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(seens), squeeze=False, sharey="row")
    for col, seen in enumerate(seens):
        part = table.filter(pl.col("seen") == seen)
        x = np.arange(part.height)
        for row, metric in enumerate(("pearson_de", "mae_de")):
            ax = axes[row][col]
            hw = np.nan_to_num(part[f"{metric}_hw"].to_numpy())
            ax.bar(x, part[metric].to_numpy(), yerr=hw, color="tab:blue", capsize=3)
            ax.set_xticks(x, part["model"].to_list(), rotation=45, ha="right")
            ax.set_title(f"seen {seen}: {HEADERS[metric]}" if row == 0 else HEADERS[metric])
    fig.suptitle("Two-gene perturbations by genes seen as singles in training (mean ± 1.96 SE over folds)")
    fig.tight_layout()
    return fig


def write_combos_report(results: pl.DataFrame, notes, out_dir: str | PathLike) -> dict[str, Path]:
    """results.parquet, seen_table.csv / .md (one block per seen category), combos.png, notes.txt."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = seen_table(results)
    paths = {
        "results": out / "results.parquet",
        "table_csv": out / "seen_table.csv",
        "table_md": out / "seen_table.md",
        "figure": out / "combos.png",
        "notes": out / "notes.txt",
    }
    write_frame(paths["results"], results)
    write_frame(paths["table_csv"], table)
    write_text(paths["table_md"], format_seen_table(table))
    figure = draw_seen_figure(table)
    write_bytes_from(paths["figure"], lambda f: figure.savefig(f, format="png", dpi=150))
    write_text(paths["notes"], "\n".join(notes) + "\n")
    return paths


__all__ = ["METRICS", "draw_seen_figure", "format_seen_table", "seen_table", "write_combos_report"]

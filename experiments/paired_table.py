"""A run's models by training size, with paired differences against a reference model.

    python -m experiments.paired_table RUN/results.parquet [MORE.parquet ...] [--reference ridge] [--screen K562]

For each (screen, size, model): the mean +- 1.96 SE across folds of Pearson top-20 DE,
NLL over all genes and 50% / 90% coverage over all and top-20 DE genes; then, for each
model against the reference, the paired difference model - reference of Pearson top-20
DE and NLL (per test perturbation, averaged per fold, mean +- 1.96 SE across folds).
Several results files are read as one table (runs of other models on the same splits,
e.g. ``--models gp_select`` added to an earlier run; rows repeated across files are an
error). For models whose records name a ``kernel_choice`` (``gp_select``), the folds
each kernel was chosen for, per size. The issue-22 comparison:
``gpllm reproduce --config experiments/gp_scaled.toml``.
"""

from __future__ import annotations

import argparse
import json
import sys

import polars as pl

import gpllm
from gpllm.evaluate.metrics import summarize_over_splits

COLUMNS = ("pearson_de", "nll", "coverage50", "coverage90", "coverage50_de", "coverage90_de")
PAIRED = ("pearson_de", "nll")
KEYS = ("screen", "embedding", "size", "fold", "pert")


def _cell(values, folds) -> str:
    summary = summarize_over_splits(values, folds)
    return f"{summary.mean:.3f} ± {summary.half_width:.3f}"


def table(rows: pl.DataFrame, reference: str) -> str:
    """Markdown: one line per (screen, size, model), the paired columns against ``reference``."""
    header = ["screen", "size", "model", *COLUMNS, *(f"Δ{c} vs {reference}" for c in PAIRED)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ref = rows.filter(pl.col("model") == reference).select(*KEYS, *(pl.col(c).alias(f"ref_{c}") for c in PAIRED))
    for (screen, size, model), group in rows.sort("screen", "size", "model").group_by(
        ["screen", "size", "model"], maintain_order=True
    ):
        folds = group["fold"].to_numpy()
        cells = [_cell(group[c].to_numpy(), folds) for c in COLUMNS]
        paired = group.join(ref, on=list(KEYS), how="inner")
        if model == reference or paired.height == 0:
            cells += ["—"] * len(PAIRED)
        else:
            cells += [_cell((paired[c] - paired[f"ref_{c}"]).to_numpy(), paired["fold"].to_numpy()) for c in PAIRED]
        lines.append("| " + " | ".join([screen, str(size), model, *cells]) + " |")
    return "\n".join(lines)


def kernel_choices(rows: pl.DataFrame) -> str:
    """Markdown: per (screen, model, size), how many folds chose each kernel (records with a
    ``kernel_choice``, the JSON ``hyperparameters`` on each fold's first row); "" if none."""
    records = rows.filter(pl.col("hyperparameters") != "").with_columns(
        pl.col("hyperparameters").map_elements(lambda r: json.loads(r).get("kernel_choice"), pl.String).alias("kernel")
    )
    counts = records.drop_nulls("kernel").group_by("screen", "model", "size", "kernel").len().sort(pl.all())
    if counts.height == 0:
        return ""
    lines = ["| screen | model | size | kernel chosen: folds |", "|---|---|---|---|"]
    for (screen, model, size), group in counts.group_by(["screen", "model", "size"], maintain_order=True):
        chosen = ", ".join(f"{k}: {n}" for k, n in zip(group["kernel"], group["len"]))
        lines.append(f"| {screen} | {model} | {size} | {chosen} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="one or more runs' results.parquet (read as one table)")
    parser.add_argument("--reference", default="ridge", help="the model the paired differences are taken against")
    parser.add_argument("--screen", default=None, help="one screen only (default: every screen)")
    args = parser.parse_args(argv)
    gpllm.use_float64()  # the table's values are float64
    rows = pl.concat([pl.read_parquet(path) for path in args.results], how="vertical")
    if rows.select(*KEYS, "model").is_duplicated().any():
        print(f"error: {args.results} repeat rows (the same model, cell and perturbation)", file=sys.stderr)
        return 2
    if args.screen:
        rows = rows.filter(pl.col("screen") == args.screen)
    if args.reference not in rows["model"].unique().to_list():
        print(f"error: model {args.reference!r} is not in {args.results}", file=sys.stderr)
        return 2
    print(table(rows, args.reference))
    if choices := kernel_choices(rows):
        print("\n" + choices)
    return 0


if __name__ == "__main__":
    sys.exit(main())

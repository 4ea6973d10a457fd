"""``gpllm evaluate``: score a prediction h5ad from any tool against a screen."""

from __future__ import annotations

from pathlib import Path

import typer

from gpllm.cli.common import computing, fail, not_an_input, writable_file


def evaluate_command(
    predictions: Path = typer.Argument(
        ...,
        help="Prediction h5ad: obs = perturbations (GEARS names accepted: 'GENE+ctrl', 'K562_GENE+ctrl_1+1', "
        "a pair as 'A+B', 'B+A' or 'A_B'), var = genes, X = expression.",
    ),
    truth: Path = typer.Option(
        ..., "--truth", help="Measured screen: a processed h5ad (gpllm data process), or a raw one with --preset."
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="The truth is a raw screen with this layout (gears: GEARS' own h5ad; norman19, replogle_cells, "
        "replogle_bulk): processed here, keeping every gene. A pair measured in both orders ('A+B' and 'B+A') "
        "is one perturbation, its cells pooled (a note says which).",
    ),
    de_key: str | None = typer.Option(
        None,
        "--de-key",
        help="Score the DE metrics on the first 20 genes of GEARS' lists in the truth file's uns[KEY] "
        "(rank_genes_groups_cov_all: what GEARS' pearson_de and mse_de use; top_non_dropout_de_20) "
        "instead of the truth's own top DE genes.",
    ),
    train: str | None = typer.Option(
        None,
        "--train",
        help="Training perturbations (file or comma list): the Systema reference. "
        "Default: the truth's unpredicted ones.",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Per-perturbation rows: .csv or .parquet."),
    skip_unknown: bool = typer.Option(
        False, "--skip-unknown", help="Skip (and count) predicted perturbations the truth lacks instead of failing."
    ),
    variance_layer: str = typer.Option("variance", "--variance-layer", help="Layer holding predictive variances."),
) -> None:
    """Score predictions with the sweep's metrics; prints mean +- 1.96 SE across perturbations."""
    computing()
    from rich.console import Console
    from rich.table import Table

    from gpllm.atomic import write_frame
    from gpllm.cli.models import name_list
    from gpllm.data.screens.perturbation_data import PerturbationData
    from gpllm.errors import GPLLMError, InputError
    from gpllm.evaluate import external

    try:
        if out is not None and not out.name.lower().endswith((".csv", ".parquet")):
            raise InputError(f"--out {out}: write rows as .csv or .parquet")
        if out is not None:
            writable_file(out, "--out")
            not_an_input({"--out": out}, {"PREDICTIONS": predictions, "--truth": truth, "--train": train})
        screen = PerturbationData.load(truth) if preset is None else external.truth_from_raw(truth, preset)
        pred, notes = external.read_prediction(predictions, variance_layer)
        aligned = external.align_to_truth(pred, screen, skip_unknown=skip_unknown)
        train_names = name_list(train, "--train") if train is not None else None
        reference, how = external.systema_reference(screen, aligned.rows, train_names)
        if de_key is None:
            de, de_notes = None, [f"DE genes (pearson_de, mae_de, mse_de): the truth's own top {screen.de.shape[1]}"]
        else:
            de, de_notes = external.gears_de(truth, de_key, screen, aligned)
        rows = external.score(aligned, screen, reference, de)
        if out is not None:
            write_frame(out, rows)
    except GPLLMError as err:
        raise fail(err) from err
    n = rows.height
    typer.echo(f"{predictions} vs {truth}: {n} perturbations, mean ± 1.96 SE across perturbations (no folds)")
    table = Table()
    for col in ("metric", "mean", "± 1.96 SE", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for s in external.summarise(rows):
        table.add_row(s.metric, f"{s.mean:.4f}", f"{s.half_width:.4f}", str(s.n))
    Console().print(table)
    undefined = int(rows["undefined_de"].sum())
    if undefined:
        notes.append(f"pearson_de undefined (a constant side) for {undefined} perturbation(s), counted as 0")
    for line in [*notes, *aligned.notes, *de_notes, f"Systema reference (pearson_de_meanref): {how}"]:
        typer.echo(f"note: {line}")  # plain lines: greppable, never re-wrapped
    if out is not None:
        typer.echo(f"wrote {n} rows to {out}")

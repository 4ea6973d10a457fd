"""``gpllm evaluate``: score a prediction h5ad from any tool against a screen."""

from __future__ import annotations

from pathlib import Path

import typer

from gpllm.cli.common import fail, writable_file


def evaluate_command(
    predictions: Path = typer.Argument(..., help="Prediction h5ad: obs = perturbations (GEARS 'GENE+ctrl' names accepted), var = genes, X = expression."),
    truth: Path = typer.Option(..., "--truth", help="Measured screen: a processed h5ad (gpllm data process), or a raw one with --preset."),
    preset: str | None = typer.Option(None, "--preset", help="The truth is a raw screen with this layout (e.g. norman19 for GEARS' 'condition' / 'ctrl' labels): processed here, keeping every gene."),
    train: str | None = typer.Option(
        None, "--train", help="Training perturbations (file or comma list): the Systema reference. Default: the truth's unpredicted ones."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Per-perturbation rows: .csv or .parquet."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Skip (and count) predicted perturbations the truth lacks instead of failing."),
    variance_layer: str = typer.Option("variance", "--variance-layer", help="Layer holding predictive variances."),
) -> None:
    """Score predictions with the sweep's metrics; prints mean +- 1.96 SE across perturbations."""
    from rich.console import Console
    from rich.table import Table

    from gpllm.data.screens.perturbation_data import PerturbationData
    from gpllm.errors import GPLLMError, InputError
    from gpllm.evaluate import external
    from gpllm.cli.models import name_list

    try:
        if out is not None and not out.name.lower().endswith((".csv", ".parquet")):
            raise InputError(f"--out {out}: write rows as .csv or .parquet")
        if out is not None:
            writable_file(out, "--out")
        screen = PerturbationData.load(truth) if preset is None else external.truth_from_raw(truth, preset)
        pred, notes = external.read_prediction(predictions, variance_layer)
        aligned = external.align_to_truth(pred, screen, skip_unknown=skip_unknown)
        train_names = name_list(train, "--train") if train is not None else None
        reference, how = external.systema_reference(screen, aligned.rows, train_names)
        rows = external.score(aligned, screen, reference)
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
    for line in [*notes, *aligned.notes, f"Systema reference (pearson_de_meanref): {how}"]:
        typer.echo(f"note: {line}")  # plain lines: greppable, never re-wrapped
    if out is not None:
        rows.write_parquet(out) if out.name.lower().endswith(".parquet") else rows.write_csv(out)
        typer.echo(f"wrote {n} rows to {out}")

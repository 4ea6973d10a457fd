"""The ``gpllm active`` command: simulate choosing which knockouts to measure next."""

from __future__ import annotations

from pathlib import Path

import typer

from gpllm.cli.common import DEBUG


def active_command(
    config: Path = typer.Option(
        None, "--config", "-c", help="TOML config: its data sections and \\[active]; default: the synthetic screens."
    ),  # "\\[": rich would read "[active]" as markup and drop it
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Output folder (default results/active-<config name>); an interrupted run resumes there.",
    ),
    acquisitions: str = typer.Option(
        None, help="Override the acquisitions, e.g. 'random,max_variance' or 'my_acq.py:acquire'."
    ),
    repeats: int = typer.Option(None, help="Override the number of repeats (default 5)."),
    seed_size: int = typer.Option(None, help="Override the seed set size (default 50)."),
    batch_size: int = typer.Option(None, help="Override the batch size per round (default 50)."),
    budget: int = typer.Option(None, help="Override the budget: perturbations measured in the end (default 800)."),
    workers: int = typer.Option(
        1,
        help="Worker processes the (acquisition, repeat) chains spread over (default 1: this process); "
        "each runs on all the cores, so the results do not depend on it.",
    ),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    debug: bool = DEBUG,
) -> None:
    """Simulate sequential experiment design on a screen: acquisitions add batches of measured
    perturbations, the GP is refitted and scored on a held-out set after every round; writes
    learning curves (PNG) and the measurements each acquisition needs to match random."""
    from gpllm.cli.common import computing, fail, writable_folder
    from gpllm.errors import GPLLMError, InputError

    try:  # checked at once, before JAX and the data layers are loaded
        if config is not None and not config.is_file():
            raise InputError(f"config {config} does not exist")
        if workers is not None and workers < 1:
            raise InputError(f"--workers must be >= 1, got {workers}")
    except GPLLMError as err:
        raise fail(err) from err
    computing()  # float64 and the compilation cache, as every computing command
    import dataclasses
    import sys

    from rich.console import Console
    from rich.table import Table

    from gpllm.active.curves import printable
    from gpllm.active.run import load_configs, run_active

    try:
        data_config, active_config = load_configs(config)
        overrides = {"repeats": repeats, "seed_size": seed_size, "batch_size": batch_size, "budget": budget}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if acquisitions:
            overrides["acquisitions"] = tuple(a.strip() for a in acquisitions.split(",") if a.strip())
            if not overrides["acquisitions"]:
                raise InputError(f"--acquisitions {acquisitions!r} names no acquisition")
        if overrides:
            active_config = dataclasses.replace(active_config, **overrides)
        folder = writable_folder(out or Path("results") / f"active-{data_config.folder_name}", "--out")
        run = run_active(data_config, active_config, folder, progress=not no_progress, workers=workers)
    except GPLLMError as err:
        raise fail(err, debug) from err
    console = Console(width=None if sys.stdout.isatty() else 140)
    if run.table is not None:
        shown = printable(run.table)
        table = Table(
            title="Perturbations measured to reach a share of the Pearson Δ (top 20 DE) "
            "that random reaches at the full budget (mean over repeats)",
            title_justify="left",
        )
        for column in shown.columns:
            table.add_column(column)
        for row in shown.iter_rows():
            table.add_row(*(str(v) for v in row))
        console.print(table)
    typer.echo("\n".join(f"{name}: {path}" for name, path in run.paths.items()))  # one path a line

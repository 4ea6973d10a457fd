"""The ``gpllm reproduce`` command: run the paper's grid and print Table 1 / S1."""

from __future__ import annotations

from pathlib import Path

import typer


def reproduce_command(
    config: Path = typer.Option(None, "--config", "-c", help="TOML config (experiments/*.toml); default: the synthetic demo."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default results/<config name>); an interrupted run resumes there."),
    sizes: str = typer.Option(None, help="Override training sizes, e.g. '100,400'."),
    folds: str = typer.Option(None, help="Override the number of folds (an integer, or 'loo')."),
    models: str = typer.Option(None, help="Override the models, e.g. 'gp,knn_k1,nonctrl_mean'."),
    workers: int = typer.Option(None, min=1, help="Worker processes (default: one per CPU core on CPU, 1 on GPU/TPU; 1 runs in this process)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    debug: bool = typer.Option(False, "--debug", help="On a worker's failure, print its full traceback (always kept in the run folder's errors.log)."),
) -> None:
    """Run the paper's evaluation (screens x embeddings x models x sizes x folds), write results,
    Tables 1 / S1 and Figures 1-3, and print the tables."""
    if config is not None and not config.is_file():  # said at once, before the heavy imports
        typer.echo(f"error: config {config} does not exist", err=True)
        raise typer.Exit(code=1)
    import dataclasses
    import sys

    from rich.console import Console

    from gpllm.cli.common import fail, writable_folder
    from gpllm.errors import GPLLMError, InputError
    from gpllm.reproduce import ReproduceConfig, reproduce
    from gpllm.report.tables import make_table, rich_table, screens

    try:
        cfg = ReproduceConfig() if config is None else ReproduceConfig.from_toml(config)
        overrides = {}
        if cfg.combos is not None and (sizes or folds or models):
            raise InputError("--sizes, --folds and --models set the grid; a [combos] config sets its own in [combos]")
        if sizes:
            overrides["sizes"] = _integers(sizes, "--sizes")
        if folds:
            overrides["n_folds"] = folds if folds == "loo" else _integers(folds, "--folds")[0]
        if models:
            overrides["models"] = tuple(m.strip() for m in models.split(","))
        if overrides:
            cfg = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, **overrides))
        folder = writable_folder(out or Path("results") / cfg.folder_name, "--out")
        run = reproduce(cfg, folder, progress=progress, workers=workers)
    except GPLLMError as err:
        if debug and getattr(err, "details", ""):
            typer.echo(err.details, err=True)
        raise fail(err) from err
    # Wide enough for Table 1's five columns when stdout is a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 140)
    if cfg.combos is not None:
        from gpllm.report.combos import format_seen_table, seen_table

        console.print(format_seen_table(seen_table(run.results)), markup=False)
        console.print(f"results, seen tables and figure: {run.out_dir / 'report'}")
        return
    for screen in screens(run.results):
        console.print(rich_table(make_table(run.results, screen)))
    console.print(f"results: {run.out_dir / 'results.parquet'}; tables and figures: {run.out_dir / 'report'}; "
                  f"the table at every training size: {run.out_dir / 'report' / 'by_size'}")


def _integers(text: str, option: str) -> tuple[int, ...]:
    """``"100,400"`` -> (100, 400); InputError naming the option and the bad item."""
    from gpllm.errors import InputError

    out = []
    for item in text.split(","):
        try:
            out.append(int(item))
        except ValueError:
            raise InputError(f"{option}: {item.strip()!r} is not an integer (give e.g. '100,400')") from None
    return tuple(out)

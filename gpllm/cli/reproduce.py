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
) -> None:
    """Run the paper's evaluation (screens x embeddings x models x sizes x folds), write results,
    Tables 1 / S1 and Figures 1-3, and print the tables."""
    import dataclasses
    import sys

    from rich.console import Console

    from gpllm.cli.common import fail
    from gpllm.errors import GPLLMError
    from gpllm.reproduce import ReproduceConfig, reproduce
    from gpllm.report.tables import make_table, rich_table, screens

    try:
        cfg = ReproduceConfig() if config is None else ReproduceConfig.from_toml(config)
        overrides = {}
        if sizes:
            overrides["sizes"] = tuple(int(s) for s in sizes.split(","))
        if folds:
            overrides["n_folds"] = folds if folds == "loo" else int(folds)
        if models:
            overrides["models"] = tuple(m.strip() for m in models.split(","))
        if overrides:
            cfg = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, **overrides))
        run = reproduce(cfg, out or Path("results") / cfg.name, progress=progress, workers=workers)
    except GPLLMError as err:
        raise fail(err) from err
    except ValueError as err:  # malformed --sizes / --folds
        raise fail(err) from err
    # Wide enough for Table 1's five columns when stdout is a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 140)
    for screen in screens(run.results):
        console.print(rich_table(make_table(run.results, screen)))
    console.print(f"results: {run.out_dir / 'results.parquet'}; tables and figures: {run.out_dir / 'report'}")

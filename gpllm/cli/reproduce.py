"""The ``gpllm reproduce`` command: run the paper's grid and print Table 1 / S1."""

from __future__ import annotations

from pathlib import Path

import typer

from gpllm.cli.common import DEBUG


def reproduce_command(
    config: Path = typer.Option(
        None, "--config", "-c", help="TOML config (experiments/*.toml); default: the synthetic demo."
    ),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output folder (default results/<config name>); an interrupted run resumes there."
    ),
    sizes: str = typer.Option(None, help="Override training sizes, e.g. '100,400'."),
    folds: str = typer.Option(None, help="Override the number of folds (an integer, or 'loo')."),
    models: str = typer.Option(
        None, help="Override the models (comma-separated, see `gpllm fit --help`), e.g. gp,ridge."
    ),
    workers: int = typer.Option(
        None,
        help="Worker processes (default: one per CPU core on CPU, 1 on GPU/TPU; 1 runs in this process); "
        "with a Dask executor, the local run whose thread counts the cluster's workers are checked against.",
    ),
    executor: str = typer.Option(
        None,
        help="Where the sweep runs: 'local' or 'dask://HOST:PORT' (a Dask cluster whose workers see --out); "
        "default: the config's, else local.",
    ),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    debug: bool = DEBUG,
) -> None:
    """Run the paper's evaluation (screens x embeddings x models x sizes x folds), write results,
    Tables 1 / S1 and Figures 1-3, and print the tables."""
    from gpllm.cli.common import computing, fail, writable_folder
    from gpllm.errors import GPLLMError, InputError

    try:  # the arguments are checked at once, before JAX and the data layers are loaded
        if config is not None and not config.is_file():
            raise InputError(f"config {config} does not exist")
        overrides = _overrides(sizes, folds, models)
        if workers is not None and workers < 1:
            raise InputError(f"--workers must be >= 1, got {workers}")
    except GPLLMError as err:
        raise fail(err) from err
    computing()
    import contextlib
    import dataclasses
    import sys

    from rich.console import Console

    from gpllm.evaluate.runner.executors import open_executor
    from gpllm.report.tables import make_table, rich_table, screens
    from gpllm.reproduce import ReproduceConfig, reproduce

    try:
        cfg = ReproduceConfig() if config is None else ReproduceConfig.from_toml(config)
        if cfg.combos is not None and overrides:
            raise InputError("--sizes, --folds and --models set the grid; a [combos] config sets its own in [combos]")
        if overrides:
            cfg = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, **overrides))
        if executor is not None:
            cfg = dataclasses.replace(cfg, executor=executor)
        # Connected before the folder is made: an unreachable cluster leaves nothing behind.
        with contextlib.closing(open_executor(cfg.executor, workers=workers)) as opened:
            folder = writable_folder(out or Path("results") / cfg.folder_name, "--out")
            run = reproduce(cfg, folder, progress=not no_progress, executor=opened)
    except GPLLMError as err:
        raise fail(err, debug) from err
    # Wide enough for Table 1's five columns when stdout is a file or a pipe.
    console = Console(width=None if sys.stdout.isatty() else 140)
    if cfg.combos is not None:
        from gpllm.report.combos import format_seen_table, seen_table

        console.print(format_seen_table(seen_table(run.results)), markup=False)
        console.print(f"results, seen tables and figure: {run.out_dir / 'report'}")
        return
    for screen in screens(run.results):
        console.print(rich_table(make_table(run.results, screen)))
    # one path a line, never wrapped inside a path
    typer.echo(
        f"results: {run.out_dir / 'results.parquet'}\ntables and figures: {run.out_dir / 'report'}\n"
        f"the table at every training size: {run.out_dir / 'report' / 'by_size'}"
    )


def _overrides(sizes: str | None, folds: str | None, models: str | None) -> dict:
    """The sweep settings the options override, parsed (InputError naming the option)."""
    overrides = {}
    if sizes:
        overrides["sizes"] = _integers(sizes, "--sizes")
    if folds:
        overrides["n_folds"] = folds if folds == "loo" else _integers(folds, "--folds")[0]
    if models:
        overrides["models"] = tuple(m.strip() for m in models.split(","))
    return overrides


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

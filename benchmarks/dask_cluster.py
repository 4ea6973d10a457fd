"""Wall time and peak memory of one small ``gpllm reproduce``, locally and on a Dask cluster.

    python -m benchmarks.dask_cluster            # the demo grid at sizes 100,400, 2 folds (sweep --quick's)
    python -m benchmarks.dask_cluster --config experiments/gwps.toml --sizes 100,200 --folds 2
    gpllm bench dask_cluster [options]

Runs the same ``gpllm reproduce`` twice, each in a fresh child process into a new
folder with its own empty JAX compilation cache (both compile every program, as
a first run does):

1. local: ``--workers N``, N spawned worker processes, each pinned to its cores;
2. dask: ``--executor dask://...`` on a ``distributed.LocalCluster`` of N worker
   processes with one thread each, each pinned to its own cores as the local
   workers are (:func:`gpllm.evaluate.runner.dask_executor.pin_local_workers`, before
   JAX starts in them, so that XLA and OpenBLAS run on as many threads as a
   local worker's and round alike), which the benchmark starts before the run
   (not timed) and stops after.

Prints the two wall times side by side with the peak resident memory of each
run's processes, sampled from /proc every 0.2 s (:func:`benchmarks.sweep.measured_run`):
the child and its local workers; the child and the cluster's worker processes
(the scheduler and nannies live in this process and are not counted). Then
checks that the two results tables agree
(:func:`gpllm.evaluate.compare.table_differences`: the same rows, floats within
1e-6 relative, the GP's record left out); where they do not, it prints the largest
difference of each headline metric per model, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from gpllm.blas import limit_openblas_spin
from gpllm.evaluate.compare import table_differences
from gpllm.evaluate.runner.dask_executor import pin_local_workers

# benchmarks.sweep is imported where it is used: it imports benchmarks.peers, whose
# gpjax and tinygp start JAX on import, and the cluster's worker processes import this
# module when they start (their main module), before they are pinned; JAX would then
# size its thread pool to every core, and they would round unlike local workers.
if TYPE_CHECKING:
    from benchmarks.sweep import MeasuredRun

#: The metrics whose largest difference per model is shown when the tables differ.
SHOWN = ("pearson_de", "pearson_all", "mae_de", "mae_all", "pearson_de_meanref")


def reproduce_command(args, out: Path) -> list[str]:
    """The ``gpllm reproduce`` both runs share, writing into ``out``."""
    command = [
        sys.executable,
        "-m",
        "gpllm.cli",
        "reproduce",
        "--out",
        str(out),
        "--no-progress",
        "--sizes",
        args.sizes,
        "--folds",
        str(args.folds),
    ]
    if args.config is not None:
        command += ["--config", str(args.config.resolve())]
    return command


def largest_differences(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Per model, the largest |a - b| of each :data:`SHOWN` metric, of two tables whose rows align."""
    diff = a.select("model", *[(pl.col(c) - b[c]).abs().alias(c) for c in SHOWN])
    return diff.group_by("model", maintain_order=True).max()


def numerics_warnings(stderr: str) -> list[str]:
    """The lines in which the Dask executor warned that a worker's numerics differ from a local run's."""
    return [line for line in stderr.splitlines() if line.startswith("Dask worker")]


def run_local(args, root: Path, tmp: Path, env: dict[str, str]) -> MeasuredRun | None:
    from benchmarks.sweep import measured_run

    command = [*reproduce_command(args, root / "local"), "--workers", str(args.workers)]
    return measured_run(command, tmp / "cache-local", env=env)


def run_on_cluster(args, root: Path, tmp: Path, env: dict[str, str]) -> tuple[MeasuredRun | None, float]:
    """The run on a fresh LocalCluster, and the seconds the cluster took to start."""
    from distributed import Client, LocalCluster

    from benchmarks.sweep import measured_run

    started = time.time()
    with (
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        pin_local_workers(client)
        startup = time.time() - started
        workers = list(client.run(os.getpid).values())
        executor = "dask://" + cluster.scheduler_address.removeprefix("tcp://")
        # --workers: the local run its workers are checked against (it warns where they differ)
        command = [*reproduce_command(args, root / "dask"), "--executor", executor, "--workers", str(args.workers)]
        return measured_run(command, tmp / "cache-dask", also=workers, env=env), startup


def main(argv: list[str] | None = None) -> int:
    from benchmarks.peers import REPO_ROOT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="a gpllm reproduce config (default: the demo)")
    parser.add_argument("--sizes", default="100,400", help="training sizes of both runs (default 100,400)")
    parser.add_argument("--folds", type=int, default=2, help="CV folds of both runs (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes = cluster workers (default 2)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench_dask_cluster.json")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders (local/, dask/) here")
    args = parser.parse_args(argv)
    limit_openblas_spin()  # the cluster's workers inherit it, as the CLI's own workers do
    # Both runs start from this environment. The cluster's nannies write their workers'
    # settings (OPENBLAS_NUM_THREADS=1, ...: Dask's pre-spawn-environ) into this process's
    # environment, and a command started after would build its inputs (the embeddings' PCA,
    # the synthetic screens) with one BLAS thread, rounding them unlike the local run's.
    env = dict(os.environ)
    if args.keep is not None and any((args.keep / where).exists() for where in ("local", "dask")):
        print(f"{args.keep} holds a local/ or dask/ run folder, which would resume: choose an empty --keep folder")
        return 1

    with tempfile.TemporaryDirectory(prefix="gpllm-dask-") as name:
        tmp = Path(name)  # the compilation caches, and the run folders unless --keep
        root = args.keep or tmp
        local = run_local(args, root, tmp, env)
        if local is None:
            return 1
        dask, startup = run_on_cluster(args, root, tmp, env)
        if dask is None:
            return 1
        tables = [pl.read_parquet(root / where / "results.parquet") for where in ("local", "dask")]
    problems = table_differences(*tables)

    what = f"{args.config.name if args.config else 'the demo'}, sizes {args.sizes}, {args.folds} folds"
    print(f"gpllm reproduce ({what}) on {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"  {'':<40} {'wall time':>10} {'peak memory':>12}")
    for label, run in (
        (f"local: --workers {args.workers}", local),
        (f"dask: LocalCluster of {args.workers} worker processes", dask),
    ):
        print(f"  {label:<40} {run.wall_s:8.1f} s {run.peak_bytes / 1024**3:8.2f} GiB")
    print(
        f"  dask / local wall time: {dask.wall_s / local.wall_s:.2f}x (the cluster took {startup:.1f} s to "
        "start, not counted)"
    )
    for line in numerics_warnings(dask.stderr):
        print(f"  the dask run warned: {line}")
    if problems:
        print(f"  results tables DIFFER ({len(problems)} problems, all in {args.json}); the first: {problems[0]}")
        if tables[0].height == tables[1].height and tables[0]["model"].equals(tables[1]["model"]):
            with pl.Config(tbl_hide_dataframe_shape=True, tbl_cols=len(SHOWN) + 1, float_precision=6):
                print("  largest |local - dask| per model:")
                print(largest_differences(*tables))
    else:
        print(
            f"  results tables equal: {tables[0].height} rows, floats within 1e-6 relative "
            "(the GP's recorded hyperparameters left out)"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "local": local._asdict(),
        "dask": dask._asdict(),
        "cluster_startup_s": startup,
        "rows": tables[0].height,
        "differences": problems,
        "sizes": args.sizes,
        "folds": args.folds,
        "workers": args.workers,
        "config": str(args.config) if args.config else None,
    }
    for run in ("local", "dask"):
        figures[run].pop("stdout")
        figures[run]["warnings"] = numerics_warnings(figures[run].pop("stderr"))
    args.json.write_text(json.dumps(figures, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

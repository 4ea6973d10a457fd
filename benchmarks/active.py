"""Time and peak memory of the default ``gpllm active``, and what it finds on the synthetic screen.

    python -m benchmarks.active              # the default: 5 acquisitions x 5 repeats x 16 rounds
    python -m benchmarks.active --quick      # 2 repeats, budget 300: a few minutes
    python -m benchmarks.active --workers 2  # gpllm active --workers 2 (default: its own, 1)

Runs ``gpllm active`` in a fresh child process into a new temporary folder,
first with an empty JAX compilation cache ("cold", as a first run), then
again on the programs it cached ("warm", as any later run; ``--cold-only``
skips it). Prints each wall time and the peak resident memory of the child
and its workers (sampled from /proc every 0.2 s) against the targets (10
minutes, 4 GiB), their CPU seconds, the worker-seconds per acquisition (the
run's ``timings.jsonl``), the measurements-to-90% / 95% table and the
learning curves at a few sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import polars as pl

from benchmarks.peers import REPO_ROOT
from benchmarks.sweep import measured_run
from gpllm.active.curves import learning_curves, printable
from gpllm.evaluate.runner.store import RunStore

TARGET_SECONDS = 600
TARGET_BYTES = 4 * 1024**3
SHOWN_SIZES = (50, 100, 200, 400, 600, 800)


def run_once(args, cache: Path, out: Path) -> dict | None:
    """One ``gpllm active`` in a child process into ``out``; its figures, or None on failure."""
    command = [sys.executable, "-m", "gpllm.cli", "active", "--out", str(out), "--no-progress"]
    if args.quick:
        command += ["--repeats", "2", "--budget", "300"]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    cpu_before = _children_cpu_seconds()
    run = measured_run(command, cache)
    if run is None:
        return None
    cpu = _children_cpu_seconds() - cpu_before
    per_acquisition = defaultdict(float)
    for row in RunStore(out).read_timings():
        per_acquisition[row["chunk"].split("|")[0]] += row["seconds"]
    return {
        "wall_s": run.wall_s,
        "cpu_s": cpu,
        "peak_bytes": run.peak_bytes,
        "seconds_per_acquisition": dict(per_acquisition),
    }


def _children_cpu_seconds() -> float:
    """User + system seconds of this process's finished children (and theirs, once reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def report(label: str, run: dict) -> None:
    wall, peak = run["wall_s"], run["peak_bytes"]
    wall_verdict = "met" if wall <= TARGET_SECONDS else "NOT met"
    print(f"  {label:<44} wall time {wall:6.1f} s (target {TARGET_SECONDS} s: {wall_verdict})")
    print(f"    CPU time {run['cpu_s']:.0f} s (the command and its workers)")
    print(f"    peak memory {peak / 1024**3:.2f} GiB (target 4 GiB: {'met' if peak <= TARGET_BYTES else 'NOT met'})")
    print(
        "    seconds per acquisition (its rounds: acquire, refit, score): "
        + ", ".join(f"{a} {s:.0f}" for a, s in run["seconds_per_acquisition"].items())
    )


def science(out: Path) -> None:
    """The measurements-to-reach table and the learning curves at a few sizes."""
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=160, tbl_hide_dataframe_shape=True):
        print("\nmeasurements to reach 90% / 95% of the Pearson delta (top 20 DE) random reaches at the budget:")
        print(printable(pl.read_csv(out / "measurements_to_reach.csv")))
        curves = learning_curves(pl.read_parquet(out / "results.parquet"))
        shown = curves.filter(pl.col("n_measured").is_in(SHOWN_SIZES)).select(
            "acquisition", "n_measured", "pearson_de", "pearson_de_hw", "mae_de", "strong_found"
        )
        print("\nlearning curves (mean over repeats, hw = 1.96 SE across repeats):")
        print(printable(shown))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats, budget 300")
    parser.add_argument("--cold-only", action="store_true", help="skip the second run on a filled compilation cache")
    parser.add_argument("--workers", type=int, default=None, help="gpllm active --workers (default: its own, 1)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench_active.json")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders (run-cold/, run-warm/) here")
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    runs = {}
    with tempfile.TemporaryDirectory(prefix="gpllm-active-", dir=args.keep) as tmp:
        cache = Path(tmp) / "jax-cache"  # empty: the first run compiles everything
        for label in ("cold",) if args.cold_only else ("cold", "warm"):
            out = (args.keep or Path(tmp)) / f"run-{label}"
            if out.exists():  # it would resume, and time nothing
                print(f"{out} exists: choose an empty --keep folder")
                return 1
            run = run_once(args, cache, out)
            if run is None:
                return 1
            runs[label] = run
        print(
            f"gpllm active ({'quick' if args.quick else 'default'}) on {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, workers: {args.workers or 'the default'}"
        )
        report("cold: empty JAX compilation cache (first run)", runs["cold"])
        if "warm" in runs:
            report("warm: compiled programs from the first run", runs["warm"])
        science((args.keep or Path(tmp)) / "run-cold")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"quick": args.quick, "workers": args.workers, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

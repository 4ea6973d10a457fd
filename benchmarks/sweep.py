"""Time and peak memory of the default ``gpllm reproduce`` (the paper's grid on the synthetic screens).

    python -m benchmarks.sweep            # the full default: 2 screens x 3 embeddings x 6 sizes x 5 folds
    python -m benchmarks.sweep --quick    # sizes 100,400 and 2 folds: a minute
    gpllm bench sweep [--quick]

Runs ``gpllm reproduce`` in a fresh child process into a new temporary folder
(nothing is resumed) twice: first with an empty JAX compilation cache, so
every program is compiled as on a first run ("cold"), then again with the
programs the first run cached ("warm", as any later run; ``--cold-only``
skips it). Prints each wall time, the children's peak resident memory
(``getrusage(RUSAGE_CHILDREN)``) against the targets (5 minutes, 4 GiB), and
where the time went: the seconds between consecutive result parts, summed per
model and per training size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.peers import REPO_ROOT
from gpllm import compilation_cache

TARGET_SECONDS = 300
TARGET_BYTES = 4 * 1024**3


def part_durations(out: Path, started: float) -> list[tuple[str, float]]:
    """(chunk file stem, seconds since the previous part) in the order the parts were written."""
    parts = sorted((p.stat().st_mtime, p.stem) for p in (out / "parts").glob("*.parquet"))
    previous, rows = started, []
    for mtime, stem in parts:
        rows.append((stem.rsplit("-", 1)[0], mtime - previous))
        previous = mtime
    return rows


def breakdown(rows: list[tuple[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per model and per size from part names ``<screen>_<embedding>_<model>_<size>``."""
    by_model, by_size = defaultdict(float), defaultdict(float)
    for name, seconds in rows:
        size = name.rsplit("_", 1)[1]
        model = next(m for m in ("random_perturbation", "nonctrl_mean", "knn_ktuned", "knn_k1", "ridge", "linear",
                                 "gp_blocks", "gp", "control") if f"_{m}_" in f"_{name}")  # fmt: skip
        by_model[model] += seconds
        by_size[size] += seconds
    return dict(by_model), dict(by_size)


def run_once(args, cache: Path, tmp: Path, label: str) -> dict | None:
    """One ``gpllm reproduce`` in a child process into a new folder; its figures, or None on failure."""
    out = tmp / f"run-{label}"
    command = [sys.executable, "-m", "gpllm.cli", "reproduce", "--out", str(out), "--no-progress"]
    if args.quick:
        command += ["--sizes", "100,400", "--folds", "2"]
    env = {**os.environ, compilation_cache.ENV: str(cache)}
    started = time.time()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    wall = time.time() - started
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        return None
    rows = part_durations(out, started)
    by_model, by_size = breakdown(rows)
    return {"wall_s": wall, "parts": len(rows), "seconds_per_model": by_model, "seconds_per_size": by_size}


def report(label: str, run: dict) -> None:
    wall = run["wall_s"]
    print(f"  {label:<44} wall time {wall:6.1f} s (target {TARGET_SECONDS} s: {'met' if wall <= TARGET_SECONDS else 'NOT met'})")
    print(f"    {run['parts']} result parts; seconds per model: "
          + ", ".join(f"{m} {s:.0f}" for m, s in sorted(run["seconds_per_model"].items(), key=lambda kv: -kv[1])))  # fmt: skip
    print("    seconds per training size: "
          + ", ".join(f"{k} {v:.0f}" for k, v in sorted(run["seconds_per_size"].items(), key=lambda kv: int(kv[0]))))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 100,400 and 2 folds")
    parser.add_argument("--cold-only", action="store_true", help="skip the second run on a filled compilation cache")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench_sweep.json")
    args = parser.parse_args(argv)

    runs = {}
    with tempfile.TemporaryDirectory(prefix="gpllm-sweep-") as tmp:
        cache = Path(tmp) / "jax-cache"  # empty: the first run compiles everything
        labels = ("cold", "warm") if not args.cold_only else ("cold",)
        for label in labels:
            run = run_once(args, cache, Path(tmp), label)
            if run is None:
                return 1
            runs[label] = run
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

    print(f"gpllm reproduce ({'quick' if args.quick else 'default grid'}) on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    report("cold: empty JAX compilation cache (first run)", runs["cold"])
    if "warm" in runs:
        report("warm: compiled programs from the first run", runs["warm"])
    print(f"  peak memory {peak / 1024**3:.2f} GiB, largest of the runs (target 4 GiB: "
          f"{'met' if peak <= TARGET_BYTES else 'NOT met'})")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"quick": args.quick, "peak_bytes": peak, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

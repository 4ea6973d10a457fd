"""Time and peak memory of the default ``gpllm reproduce`` (the paper's grid on the synthetic screens).

    python -m benchmarks.sweep            # the full default: 2 screens x 3 embeddings x 6 sizes x 5 folds
    python -m benchmarks.sweep --quick    # sizes 100,400 and 2 folds: a minute
    gpllm bench sweep [--quick]

Runs ``gpllm reproduce`` in a fresh child process into a new temporary folder (so
nothing is resumed and every JAX program is compiled, as on a first run), then
prints the wall time, the child's peak resident memory (``getrusage(RUSAGE_CHILDREN)``)
against the targets (5 minutes, 4 GiB), and where the time went: the seconds
between consecutive result parts, summed per model and per training size.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.peers import REPO_ROOT

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 100,400 and 2 folds")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench_sweep.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gpllm-sweep-") as tmp:
        out = Path(tmp) / "run"
        command = [sys.executable, "-m", "gpllm.cli", "reproduce", "--out", str(out), "--no-progress"]
        if args.quick:
            command += ["--sizes", "100,400", "--folds", "2"]
        started = time.time()
        done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        wall = time.time() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return done.returncode
        rows = part_durations(out, started)
        by_model, by_size = breakdown(rows)

    print(f"gpllm reproduce ({'quick' if args.quick else 'default grid'}) on {platform.processor() or platform.machine()}")
    print(f"  wall time   {wall:8.1f} s   (target {TARGET_SECONDS} s: {'met' if wall <= TARGET_SECONDS else 'NOT met'})")
    print(f"  peak memory {peak / 1024**3:8.2f} GiB (target 4 GiB: {'met' if peak <= TARGET_BYTES else 'NOT met'})")
    print(f"  {len(rows)} result parts; seconds per model: "
          + ", ".join(f"{m} {s:.0f}" for m, s in sorted(by_model.items(), key=lambda kv: -kv[1])))  # fmt: skip
    print("  seconds per training size: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_size.items(), key=lambda kv: int(kv[0]))))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"quick": args.quick, "wall_s": wall, "peak_bytes": peak,
                                     "seconds_per_model": by_model, "seconds_per_size": by_size}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wall time and peak memory of the synthetic combos run, and the seen-0/1/2 table it prints.

    python -m benchmarks.combos                          # experiments/combos.toml
    python -m benchmarks.combos --config my_combos.toml

Runs ``gpllm reproduce --config CONFIG`` in a fresh child process into a new
temporary folder with an empty JAX compilation cache (every program compiled,
as on a first run), sampling the resident memory of the child and its
descendants every 0.2 s (:func:`benchmarks.sweep.measured_run`), then prints
the wall time, the peak memory and the table the run printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

from benchmarks.peers import REPO_ROOT
from benchmarks.sweep import measured_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "experiments" / "combos.toml")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gpllm-combos-") as tmp:
        command = [
            sys.executable,
            "-m",
            "gpllm.cli",
            "reproduce",
            "--config",
            str(args.config.resolve()),
            "--out",
            str(Path(tmp) / "run"),
            "--no-progress",
        ]
        run = measured_run(command, Path(tmp) / "jax-cache")
    if run is None:
        return 1
    cpu = platform.processor() or platform.machine()
    print(f"gpllm reproduce --config {args.config.name} on {cpu}, {os.cpu_count()} cores")
    print(
        f"  wall time {run.wall_s:.1f} s (empty JAX compilation cache); peak memory of the process tree "
        f"{run.peak_bytes / 1024**3:.2f} GiB"
    )
    print(run.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time and peak memory of the default ``gpllm reproduce`` (the paper's grid on the synthetic screens).

    python -m benchmarks.sweep            # the full default: 2 screens x 3 embeddings x 6 sizes x 5 folds
    python -m benchmarks.sweep --quick    # sizes 100,400 and 2 folds: a minute
    python -m benchmarks.sweep --config experiments/gwps.toml --sizes 100,400,1000,2000 --cold-only
    gpllm bench sweep [--quick]

Runs ``gpllm reproduce`` in a fresh child process into a new temporary folder
(nothing is resumed) twice: first with an empty JAX compilation cache, so
every program is compiled as on a first run ("cold"), then again with the
programs the first run cached ("warm", as any later run; ``--cold-only``
skips it). Prints each wall time and the peak memory of the child and its
worker processes together, resident (RSS) and proportional (PSS, which counts
the pages they share once), sampled from /proc every 0.2 s, against
the targets (5 minutes, 4 GiB), and where the time went: the seconds each
chunk took (the run's ``timings.jsonl``), summed per model and per training
size; with several workers these worker-seconds add up to more than the
wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from benchmarks.peers import REPO_ROOT
from gpllm import compilation_cache
from gpllm.evaluate.runner.store import RunStore

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

TARGET_SECONDS = 300
TARGET_BYTES = 4 * 1024**3


def breakdown(timings: list[dict]) -> tuple[dict[str, float], dict[str, float], int]:
    """Worker-seconds per model and per size, and how many processes ran chunks, from
    the run's ``timings.jsonl`` (chunk keys ``screen|embedding|model|size``)."""
    by_model, by_size = defaultdict(float), defaultdict(float)
    for row in timings:
        _, _, model, size = row["chunk"].split("|")
        by_model[model] += row["seconds"]
        by_size[size] += row["seconds"]
    return dict(by_model), dict(by_size), len({row["pid"] for row in timings})


def tree_rss_bytes(*roots: int) -> int:
    """Resident memory of processes ``roots`` and all their descendants (Linux /proc), in bytes."""
    return sum(rss for _, rss in _tree(*roots))


def tree_pss_bytes(*roots: int) -> int:
    """Proportional memory (PSS) of processes ``roots`` and their descendants, in bytes: a page
    that n of them share (a mapped screen, the JAX library) counts 1/n in each, so once in all,
    where the RSS sum counts it n times. 0 where /proc has no smaps_rollup."""
    total = 0
    for pid, _ in _tree(*roots):
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:  # ended meanwhile, or an older kernel
            continue
        total += sum(int(line.split()[1]) * 1024 for line in lines if line.startswith("Pss:"))
    return total


def _tree(*roots: int) -> list[tuple[int, int]]:
    """(pid, resident bytes) of processes ``roots`` and all their descendants (Linux /proc)."""
    parents, rss = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):  # the process ended while we looked
            continue
    tree, frontier = set(roots), list(roots)
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return [(pid, rss.get(pid, 0)) for pid in tree]


class PeakSampler(threading.Thread):
    """Samples :func:`tree_rss_bytes` of processes every ``interval`` seconds; ``peak`` is the largest."""

    def __init__(self, pids: Sequence[int], interval: float = 0.2):
        super().__init__(daemon=True)
        self.pids, self.interval, self.peak, self.peak_pss = tuple(pids), interval, 0, 0
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(self.interval):
            self.peak = max(self.peak, tree_rss_bytes(*self.pids))
            self.peak_pss = max(self.peak_pss, tree_pss_bytes(*self.pids))


def run_once(args, cache: Path, tmp: Path, label: str) -> dict | None:
    """One ``gpllm reproduce`` in a child process into a new folder; its figures, or None on failure."""
    out = (args.keep or tmp) / f"run-{label}"
    if out.exists():  # it would resume, and time nothing
        print(f"{out} exists: choose an empty --keep folder")
        return None
    command = [sys.executable, "-m", "gpllm.cli", "reproduce", "--out", str(out), "--no-progress"]
    if args.config:
        command += ["--config", str(args.config)]
    if args.quick:
        command += ["--sizes", "100,400", "--folds", "2"]
    elif args.sizes:
        command += ["--sizes", args.sizes]
    if args.workers:
        command += ["--workers", str(args.workers)]
    run = measured_run(command, cache)
    if run is None:
        return None
    timings = RunStore(out).read_timings()
    by_model, by_size, processes = breakdown(timings)
    return {
        "wall_s": run.wall_s,
        "parts": len(timings),
        "processes": processes,
        "peak_tree_bytes": run.peak_bytes,
        "peak_tree_pss_bytes": run.peak_pss_bytes,
        "seconds_per_model": by_model,
        "seconds_per_size": by_size,
    }


class MeasuredRun(NamedTuple):
    wall_s: float
    peak_bytes: int  # resident (RSS) of the process tree
    stdout: str
    stderr: str
    peak_pss_bytes: int = 0  # proportional (PSS): shared pages once


def measured_run(
    command: list[str], cache: Path, also: Sequence[int] = (), env: Mapping[str, str] | None = None
) -> MeasuredRun | None:
    """``command`` in a child process (JAX compilation cache ``cache``; environment ``env``,
    default this process's), its wall time, the peak resident memory of its process tree
    (together with the trees of the processes ``also``, e.g. the workers of a cluster it runs
    on), its stdout and stderr; None (output printed) if it failed."""
    env = {**(os.environ if env is None else env), compilation_cache.ENV: str(cache)}
    started = time.time()
    child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    sampler = PeakSampler((child.pid, *also))
    sampler.start()
    stdout, stderr = child.communicate()
    wall = time.time() - started
    sampler.finished.set()
    sampler.join()
    if child.returncode != 0:
        print(stdout[-3000:], stderr[-3000:], sep="\n")
        return None
    return MeasuredRun(wall, sampler.peak, stdout, stderr, sampler.peak_pss)


def report(label: str, run: dict, targets: bool = True) -> None:
    """Print one run's figures; ``targets``: against the default grid's (5 minutes, 4 GiB)."""
    wall, peak = run["wall_s"], run["peak_tree_bytes"]
    time_target = f" (target {TARGET_SECONDS} s: {'met' if wall <= TARGET_SECONDS else 'NOT met'})" if targets else ""
    memory_target = f" (target 4 GiB: {'met' if peak <= TARGET_BYTES else 'NOT met'})" if targets else ""
    print(f"  {label:<44} wall time {wall:6.1f} s{time_target}")
    pss = run.get("peak_tree_pss_bytes", 0)
    print(
        f"    peak memory of the process and its workers {peak / 1024**3:.2f} GiB resident (RSS){memory_target}; "
        f"{pss / 1024**3:.2f} GiB proportional (PSS: pages they share counted once)"
    )
    print(
        f"    {run['parts']} result parts in {run['processes']} process(es); worker-seconds per model: "
        + ", ".join(f"{m} {s:.0f}" for m, s in sorted(run["seconds_per_model"].items(), key=lambda kv: -kv[1]))
    )
    print(
        "    worker-seconds per training size: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(run["seconds_per_size"].items(), key=lambda kv: int(kv[0])))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 100,400 and 2 folds")
    parser.add_argument("--cold-only", action="store_true", help="skip the second run on a filled compilation cache")
    parser.add_argument(
        "--workers", type=int, default=None, help="pass --workers to gpllm reproduce (default: its own)"
    )
    parser.add_argument("--config", type=Path, default=None, help="a config instead of the default grid")
    parser.add_argument("--sizes", default=None, help="pass --sizes to gpllm reproduce, e.g. 100,400")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "results" / "bench_sweep.json")
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the run folders (run-cold/, run-warm/) here, e.g. to compare tables",
    )
    args = parser.parse_args(argv)

    runs = {}
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpllm-sweep-", dir=args.keep) as tmp:
        cache = Path(tmp) / "jax-cache"  # empty: the first run compiles everything
        labels = ("cold", "warm") if not args.cold_only else ("cold",)
        for label in labels:
            run = run_once(args, cache, Path(tmp), label)
            if run is None:
                return 1
            runs[label] = run
    peak = max(run["peak_tree_bytes"] for run in runs.values())

    what = args.config or "default grid"
    flags = (", quick" if args.quick else "") + (", sizes " + args.sizes if args.sizes else "")
    cpu = platform.processor() or platform.machine()
    print(f"gpllm reproduce ({what}{flags}) on {cpu}, {os.cpu_count()} cores")
    default = args.config is None and not args.sizes
    report("cold: empty JAX compilation cache (first run)", runs["cold"], default)
    if "warm" in runs:
        report("warm: compiled programs from the first run", runs["warm"], default)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"quick": args.quick, "peak_bytes": peak, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

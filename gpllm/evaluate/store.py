"""A run folder that survives being killed: atomic parts, a manifest, one final table.

Layout of ``out_dir``::

    run.json                 the sweep's configuration and data fingerprint
    splits.json              the CV plan, shared by all screens (gpllm-splits format)
    parts/<chunk>.parquet    one finished chunk of result rows
    timings.jsonl            seconds each chunk took, and the process that ran it
    results.parquet          all parts, in a fixed order (written at the end)

Every file is written to a temporary name in the same folder and renamed into
place (``os.replace`` is atomic on POSIX), so a part either exists whole or
not at all: a restarted sweep skips the parts present and loses nothing. A
folder holding a different run (another ``run.json``) is refused rather than
mixed with.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import polars as pl

from gpllm.errors import DataError


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True)))


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class RunStore:
    """The files of one sweep under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def parts_dir(self) -> Path:
        return self.root / "parts"

    @property
    def results_path(self) -> Path:
        return self.root / "results.parquet"

    def open(self, run: dict) -> bool:
        """Claim the folder for ``run``; True if it resumes an earlier, identical run."""
        manifest = self.root / "run.json"
        if manifest.exists():
            previous = json.loads(manifest.read_text())
            if previous != json.loads(json.dumps(run, sort_keys=True)):
                raise DataError(
                    f"{self.root} holds a different run (its run.json differs: another config, "
                    "data or seed); choose a new output folder or delete that one"
                )
            return True
        write_json(manifest, run)
        return False

    def part_path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return self.parts_dir / f"{safe}-{fingerprint(key)[:8]}.parquet"

    def has_part(self, key: str) -> bool:
        return self.part_path(key).exists()

    def write_part(self, key: str, frame: pl.DataFrame) -> Path:
        return atomic_write(self.part_path(key), lambda tmp: frame.write_parquet(tmp))

    def read_part(self, key: str) -> pl.DataFrame:
        path = self.part_path(key)
        try:
            return pl.read_parquet(path)
        except Exception as err:  # a part we did not write whole: say which, never use it
            raise DataError(f"result part {path} is unreadable ({err}); delete it and rerun") from err

    @property
    def timings_path(self) -> Path:
        return self.root / "timings.jsonl"

    def record_time(self, key: str, seconds: float) -> None:
        """Append how long chunk ``key`` took; one short line per write, which POSIX
        appends whole even when several worker processes write at once."""
        line = json.dumps({"chunk": key, "seconds": round(seconds, 3), "pid": os.getpid()}) + "\n"
        with open(self.timings_path, "a", encoding="utf-8") as out:
            out.write(line)

    def read_timings(self) -> list[dict]:
        """Every :meth:`record_time` line (a resumed run's earlier lines included)."""
        if not self.timings_path.exists():
            return []
        return [json.loads(line) for line in self.timings_path.read_text().splitlines() if line.strip()]

    def write_results(self, keys: list[str]) -> pl.DataFrame:
        """Concatenate the parts of ``keys`` in that order into results.parquet."""
        frame = pl.concat([self.read_part(k) for k in keys], how="vertical")
        atomic_write(self.results_path, lambda tmp: frame.write_parquet(tmp))
        return frame

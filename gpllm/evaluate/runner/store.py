"""A run folder that no crash, kill or second process can corrupt.

Layout of ``out_dir``::

    run.json                 the sweep's configuration, data fingerprint and run id
    .lock                    held (flock) by the one process that owns the run; holds its pid
    splits.json              the CV plan, shared by all screens (gpllm-splits format)
    parts/<chunk>.parquet    one finished chunk of result rows
    parts/<chunk>.json       its seal: chunk key, run id, row count, sha256 of the parquet bytes
    parts/set_aside/         parts that failed their seal, kept for inspection, never used
    timings.jsonl            seconds each chunk took, and the process that ran it
    errors.log               the traceback of a worker's failure, appended (only after one)
    results.parquet          all parts, in a fixed order (written at the end)

Guarantees:

- Every file is written to a temporary name in the same folder and renamed into
  place (``os.replace`` is atomic on POSIX), with the umask's permissions.
- One process at a time owns a folder: :meth:`RunStore.open` takes an OS file
  lock, and a second run into the same folder is refused with the holder's pid.
- A part counts only with a valid seal, written after the part: the key it was
  computed for, this run's id, and the checksum of its bytes. On resume and on
  merge a part whose seal is missing or does not match (a damaged file, another
  chunk's part, a part from another run, e.g. written by a process that outlived
  its run) is set aside with a warning naming the file, and recomputed.
- A worker writes only while the folder's run id is its own.
- A folder holding a different run (another ``run.json``) is refused rather than
  mixed with; so is one whose parts have another layout (``run.json``'s
  ``results_schema``, absent before version 2), with a message saying so.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from gpllm.atomic import append_text, atomic_write, describe_cause, write_json
from gpllm.errors import DataError, WorkerError, WriteError
from gpllm.plugins import changed_code

log = logging.getLogger(__name__)

RUN_ID = "run_id"
SCHEMA = "results_schema"
#: The layout of a part's rows. Bump it whenever the sweep's row columns change, so
#: that a folder holding parts of the old layout is never resumed into a mixed table.
#: 2: per-gene calibration columns (CRPS, coverage at ten levels, recalibrated scores).
RESULTS_SCHEMA = 2


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunBusyError(DataError):
    """Another process owns the run folder."""


class RunStore:
    """The files of one sweep under ``root``; ``run_id``: the run a worker's store belongs to
    (default: the one :meth:`open` claims or finds)."""

    def __init__(self, root: str | Path, run_id: str | None = None):
        self.root = Path(root)
        self._lock = None
        self._run_id = run_id

    @property
    def parts_dir(self) -> Path:
        return self.root / "parts"

    @property
    def results_path(self) -> Path:
        return self.root / "results.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.root / "run.json"

    # ------------------------------------------------------------ ownership
    def lock(self) -> None:
        """Take the folder's lock (flock on ``.lock``) or raise RunBusyError naming the holder."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        self._check_layout()
        try:
            handle = open(self.root / ".lock", "a+")
        except OSError as err:  # e.g. a disk so full that not even an empty file can be made
            raise WriteError(f"could not write {self.root / '.lock'}: {describe_cause(err, self.root)}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise RunBusyError(
                    f"{self.root} is in use by another gpllm run (pid {holder}); wait for it to "
                    "finish, or write to another folder"
                ) from None
            raise
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
        except OSError as err:
            with contextlib.suppress(OSError):  # closing flushes the same unwritable bytes again
                handle.close()
            raise WriteError(f"could not write {self.root / '.lock'}: {describe_cause(err, self.root)}") from None
        self._lock = handle

    def _check_layout(self) -> None:
        """DataError naming the first of the folder's names that is a file where gpllm keeps a
        folder or the other way round (before anything is computed and lost at the merge)."""
        for path, is_folder in (
            (self.root / ".lock", False),
            (self.manifest_path, False),
            (self.results_path, False),
            (self.parts_dir, True),
        ):
            if path.exists() and path.is_dir() != is_folder:
                found, wanted = ("file", "folder") if is_folder else ("folder", "file")
                raise DataError(
                    f"{path} is a {found} where a run keeps a {wanted}: the run folder {self.root} "
                    "is damaged; move that away, or choose another output folder"
                )

    def release(self) -> None:
        """Give the lock back (also when the process ends, as the OS drops it then)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def open(self, run: dict) -> bool:
        """Own the folder and claim it for ``run``; True if it resumes an earlier, identical run."""
        self.lock()
        try:
            if self.manifest_path.exists() and not any(self.parts_dir.glob("*.parquet")):
                # A run that stopped before its first result (e.g. a model that failed to
                # build) holds nothing to protect: a corrected config may claim the folder.
                log.info("%s holds no results yet: starting afresh", self.root)
                self.manifest_path.unlink()
            if self.manifest_path.exists():
                try:
                    previous = json.loads(self.manifest_path.read_text())
                except ValueError as err:  # truncated, empty, not UTF-8
                    previous = f"{type(err).__name__}: {err}"
                if not isinstance(previous, dict):
                    raise DataError(
                        f"{self.manifest_path} is damaged (not a run manifest: {previous!s:.80}); "
                        "delete the folder to start afresh, or choose another output folder"
                    )
                run_id = previous.pop(RUN_ID, None)
                schema = previous.pop(SCHEMA, 1)
                if schema != RESULTS_SCHEMA:
                    raise DataError(
                        f"{self.root} holds results of an older layout (schema {schema}; this gpllm "
                        f"writes schema {RESULTS_SCHEMA}, with other columns), which cannot be resumed "
                        "into one table; choose a new output folder or delete that one"
                    )
                edited = changed_code(previous.get("code", {}), run.get("code", {}))
                if edited:
                    raise DataError(
                        f"{self.root} holds a run of other code: {', '.join(edited)} changed since it was "
                        "started, and its results would mix two versions; to start afresh, choose a new "
                        "output folder or delete that one"
                    )
                if run_id is None or previous != json.loads(json.dumps(run, sort_keys=True)):
                    raise DataError(
                        f"{self.root} holds a different run (its run.json differs: another config, "
                        "data or seed); choose a new output folder or delete that one"
                    )
                self._run_id = run_id
                return True
            self._run_id = uuid.uuid4().hex
            write_json(self.manifest_path, {**run, RUN_ID: self._run_id, SCHEMA: RESULTS_SCHEMA})
            return False
        except BaseException:
            self.release()
            raise

    @property
    def run_id(self) -> str:
        """This run's id (from run.json when this store did not open the folder itself)."""
        if self._run_id is None:
            self._run_id = self.folder_run_id()
        return self._run_id

    def folder_run_id(self) -> str | None:
        """The run id written in the folder now (None if there is no readable run.json)."""
        try:
            return json.loads(self.manifest_path.read_text()).get(RUN_ID)
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------ parts
    def part_path(self, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key).lstrip(".")  # never a hidden file
        return self.parts_dir / f"{safe}-{fingerprint(key)[:8]}.parquet"

    def seal_path(self, key: str) -> Path:
        return self.part_path(key).with_suffix(".json")

    def write_part(self, key: str, frame: pl.DataFrame) -> Path:
        """Write a chunk's rows, then its seal; refuse if the folder now belongs to another run."""
        if self.folder_run_id() != self.run_id:
            raise DataError(
                f"{self.root} now holds another run (run id {self.folder_run_id()} is not this "
                f"run's {self.run_id}); this process stops without writing {key}"
            )
        path = atomic_write(self.part_path(key), lambda tmp: frame.write_parquet(tmp))
        seal = {"key": key, RUN_ID: self.run_id, "rows": frame.height, "sha256": file_sha256(path)}
        write_json(self.seal_path(key), seal)
        return path

    def _seal_problem(self, key: str) -> str | None:
        """Why the part of ``key`` cannot be used, or None if it is whole and this run's."""
        path, seal_path = self.part_path(key), self.seal_path(key)
        try:
            seal = json.loads(seal_path.read_text())
        except FileNotFoundError:
            return "it has no seal (written by an older gpllm, or interrupted before sealing)"
        except (OSError, ValueError) as err:
            return f"its seal {seal_path.name} is unreadable ({err})"
        if seal.get("key") != key:
            return f"it holds the rows of chunk {seal.get('key')!r}, not {key!r}"
        if seal.get(RUN_ID) != self.run_id:
            return f"it was written by another run ({seal.get(RUN_ID)}, this run is {self.run_id})"
        if file_sha256(path) != seal.get("sha256"):
            return "its bytes do not match the checksum recorded when it was written (damaged)"
        return None

    def has_part(self, key: str) -> bool:
        """Whether a valid part of ``key`` exists; an invalid one is set aside (with a warning)."""
        if not self.part_path(key).exists():
            return False
        problem = self._seal_problem(key)
        if problem is None:
            return True
        self._set_aside(key, problem)
        return False

    def _set_aside(self, key: str, problem: str) -> None:
        aside = self.parts_dir / "set_aside"
        aside.mkdir(parents=True, exist_ok=True)
        path = self.part_path(key)
        for source in (path, self.seal_path(key)):
            if source.exists():
                os.replace(source, aside / source.name)
        log.warning("result part %s is not used: %s; moved to %s and recomputed", path, problem, aside)

    def read_part(self, key: str) -> pl.DataFrame:
        """A sealed part's rows; DataError naming the file if it fails its seal or cannot be read."""
        path = self.part_path(key)
        problem = self._seal_problem(key) if path.exists() else "it does not exist"
        if problem is not None:
            raise DataError(f"result part {path} cannot be used: {problem}; rerun to recompute it")
        try:
            return pl.read_parquet(path)
        except Exception as err:  # sealed yet unreadable: say which, never use it
            raise DataError(f"result part {path} is unreadable ({err}); delete it and rerun") from err

    def log_error(self, err: WorkerError) -> WorkerError:
        """Append a worker's traceback to ``errors.log``; the same error, saying where it went."""
        path = self.root / "errors.log"
        try:
            append_text(path, f"{err}\n{err.details}\n")
        except WriteError as unwritten:  # e.g. the disk that failed the worker is full
            return WorkerError(f"{err} (its traceback is not kept: {unwritten})", err.details)
        return WorkerError(f"{err} (traceback in {path})", err.details)

    # ------------------------------------------------------------ timings and results
    @property
    def timings_path(self) -> Path:
        return self.root / "timings.jsonl"

    def record_time(self, key: str, seconds: float) -> None:
        """Append how long chunk ``key`` took; one short line per write, which POSIX
        appends whole even when several worker processes write at once."""
        append_text(
            self.timings_path, json.dumps({"chunk": key, "seconds": round(seconds, 3), "pid": os.getpid()}) + "\n"
        )

    def read_timings(self) -> list[dict]:
        """Every :meth:`record_time` line (a resumed run's earlier lines included)."""
        if not self.timings_path.exists():
            return []
        return [json.loads(line) for line in self.timings_path.read_text().splitlines() if line.strip()]

    def write_results(self, keys: list[str]) -> pl.DataFrame:
        """Concatenate the sealed parts of ``keys`` in that order into results.parquet."""
        frame = pl.concat([self.read_part(k) for k in keys], how="vertical")
        atomic_write(self.results_path, lambda tmp: frame.write_parquet(tmp))
        return frame

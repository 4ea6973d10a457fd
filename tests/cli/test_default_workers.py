"""``gpllm reproduce`` without ``--workers`` runs one worker process per available core on CPU (at most
MAX_DEFAULT_WORKERS): checked here without running a grid, which the end-to-end tests do in one process."""

from __future__ import annotations

import os

import jax

import gpllm.evaluate.runner.executors as executors
from gpllm.errors import InputError
from gpllm.evaluate.runner.workers import MAX_DEFAULT_WORKERS
from tests.cli.conftest import fails


def test_reproduce_leaves_the_worker_count_to_the_default(monkeypatch, tmp_path):
    asked = []

    def stop_at_the_executor(spec, *, workers=1, timeout=5.0):
        asked.append(workers)
        raise InputError("stopped before the sweep")

    monkeypatch.setattr(executors, "open_executor", stop_at_the_executor)
    fails("reproduce", "--out", tmp_path / "run", "--no-progress", naming="stopped before the sweep")
    assert asked == [None]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    expected = min(cores, MAX_DEFAULT_WORKERS) if jax.default_backend() == "cpu" else 1
    assert executors.LocalExecutor(None).count() == expected

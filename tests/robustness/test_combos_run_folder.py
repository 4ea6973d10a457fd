"""``[combos]`` runs own their folder as sweeps do: one process at a time, sealed parts that a
resume reads back, and a different config refused rather than written over the earlier result."""

from __future__ import annotations

import dataclasses
import multiprocessing
import tomllib

import polars as pl
import pytest

from gpllm.errors import DataError
from gpllm.evaluate.runner.store import RunBusyError, RunStore
from gpllm.reproduce import ReproduceConfig, reproduce

#: tests/pairs' tiny combos run: two folds of two fast models on 24 singles and 20 pairs.
CONFIG = ReproduceConfig.from_dict(
    tomllib.loads("""
name = "tiny"
embeddings = ["text"]
pca_k = 4
combos = {n_folds = 2, models = ["additive", "ridge_summed"]}

[data]
kind = "synthetic"
seed = 1
overrides = {n_perts = 24, n_genes = 30, n_pairs = 20, text_dim = 16, seq_dim = 16, hidden = 8}
""")
)


def _hold_lock(root, ready, done):
    store = RunStore(root)
    store.lock()
    ready.set()
    done.wait(30)


def test_a_second_combos_run_into_a_busy_folder_is_refused(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, done))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunBusyError, match=f"{tmp_path} is in use by another gpllm run \\(pid {holder.pid}\\)"):
            reproduce(CONFIG, tmp_path, progress=False)
    finally:
        done.set()
        holder.join(30)
    assert not (tmp_path / "report").exists()


@pytest.mark.slow  # three combos runs, as tests/pairs marks its one
def test_a_combos_run_resumes_from_its_parts_and_refuses_another_config(tmp_path):
    first = reproduce(CONFIG, tmp_path, progress=False).results
    assert pl.read_parquet(tmp_path / "results.parquet").equals(first)
    # Parts are sealed and read back: a resumed run computes nothing and returns the same rows.
    parts = sorted((tmp_path / "parts").glob("*.parquet"))
    assert len(parts) == 2 * 3 * 2  # folds x seen categories x models
    stamps = [p.stat().st_mtime_ns for p in parts]
    assert reproduce(CONFIG, tmp_path, progress=False).results.equals(first)
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    other = dataclasses.replace(CONFIG, combos={**CONFIG.combos, "models": ["additive"]})
    with pytest.raises(DataError, match="holds a different run"):
        reproduce(other, tmp_path, progress=False)
    assert pl.read_parquet(tmp_path / "results.parquet").equals(first)
    assert pl.read_parquet(tmp_path / "report" / "results.parquet").equals(first)

"""The design simulation spread over worker processes: the same rows, bit for bit, as in one process.

Each worker runs on all the cores with this process's thread counts, so its fits round
as they would here. One tiny config (one repeat, two rounds) runs once in this
process and once over two workers; a user's acquisition checks what its design holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import jax
import polars as pl
import pytest
from typer.testing import CliRunner

from gpllm.active.run import load_configs, run_active
from gpllm.cli import app
from gpllm.evaluate.runner.executors import LocalExecutor
from gpllm.evaluate.runner.numerics import current_numerics
from tests.active.helpers import write_tiny_config

PLUGIN = """
import numpy as np

def sees_the_gp(design, batch_size, key):
    assert design.state is not None and design.state.posterior.Z.shape[0] == len(design.measured)
    return np.flatnonzero(design.available)[:batch_size]

def sees_no_gp(design, batch_size, key):
    assert design.state is None  # it said it never looks: the GP is not refactorised for it
    return np.flatnonzero(design.available)[-batch_size:]

sees_no_gp.needs_gp = False
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    acquisitions = ["random", "coreset", "variance_reduction", "checks.py:sees_the_gp", "checks.py:sees_no_gp"]
    return write_tiny_config(tmp_path_factory.mktemp("active_workers"), acquisitions, {"checks.py": PLUGIN})


@contextlib.contextmanager
def compilation_cache(folder: Path):
    """JAX's persistent cache in ``folder`` (every program) for the workers started inside,
    which copy the setting; this process's own settings restored after."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], str(folder))
    jax.config.update(names[1], 0.0)
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


@pytest.mark.slow
def test_two_workers_give_the_rows_of_one_process(config_path, tmp_path):
    """With the compilation cache on, the workers first share out the compiling (warm-ups).
    One repeat of two rounds: its five chains keep both workers busy, and each worker
    compiles one of the two training sizes (the test's cost is compiling, in each process)."""
    data, config = load_configs(config_path)
    config = dataclasses.replace(config, repeats=1, budget=12)
    here = run_active(data, config, tmp_path / "here", progress=False, workers=1)
    with compilation_cache(tmp_path / "jax-cache"):
        there = run_active(data, config, tmp_path / "there", progress=False, workers=2)
    assert any((tmp_path / "jax-cache").iterdir())
    assert here.results.height == 5 * 1 * 2
    assert there.results.equals(here.results)
    assert pl.read_parquet(tmp_path / "there" / "results.parquet").equals(here.results)


def test_workers_below_one_is_one_error_line(config_path, tmp_path):
    result = CliRunner().invoke(
        app, ["active", "--config", str(config_path), "--out", str(tmp_path / "run"), "--workers", "0"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: --workers must be >= 1, got 0"


def numerics_and_blas(item, context):
    """A task: the worker's numerical settings, and the thread count of each OpenBLAS loaded."""
    from threadpoolctl import threadpool_info

    return current_numerics(), [pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"]


@pytest.mark.slow
def test_workers_on_shared_cores_round_as_this_process():
    """XLA's thread pool and OpenBLAS's threads as in this process (where the rounding of a
    reduction comes from), not one core's worth each."""
    executor = LocalExecutor(2, shared_cores=True)
    here, _ = numerics_and_blas(None, None)
    results = executor.run_chains([[1], [2]], numerics_and_blas, None, lambda *a: None)
    for [(numerics, blas)] in results:
        assert numerics == here == executor.numerics()
        assert blas and set(blas) == {here.threads}

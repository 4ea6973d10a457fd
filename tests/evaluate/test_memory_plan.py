"""The sweep's memory plan: what cannot fit is refused before any chunk, what fits only k at a
time runs k at a time on the same cores, and a GP's estimate is the one its fit checks."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gpllm.errors import InputError, MemoryLimitError
from gpllm.evaluate.grid import Chunk, SweepConfig
from gpllm.evaluate.runner import sweep
from gpllm.evaluate.runner.executors import LocalExecutor
from gpllm.evaluate.runner.memory_plan import Phase, plan_phases, sweep_held_bytes
from gpllm.evaluate.runner.store import RunStore
from gpllm.evaluate.runner.workers import core_groups, run_chains
from gpllm.gp.api import default_batch_size
from gpllm.gp.memory import ENV, FIT_ROWS, FIT_SQUARES, GIB, STAGED_ROWS, Budget, fold_fits_peak_bytes
from gpllm.models.gp import GPModel
from gpllm.models.gp_select import rbf_or_rbf_linear
from gpllm.precision import float64_enabled
from tests.evaluate.test_workers import CHAINS, record

SMALL, MID, BIG, NONE = (
    Chunk("K562", "text", m, s) for m, s in (("gp", 100), ("gp", 400), ("gp", 1400), ("ridge", 1400))
)
PEAKS = {SMALL: 1 * GIB, MID: 4 * GIB, BIG: 6 * GIB, NONE: 0}


def test_chunks_that_fit_only_alone_run_last_one_at_a_time():
    phases = plan_phases([BIG, SMALL, NONE, MID], PEAKS, Budget(10 * GIB, "test"), workers=2)
    assert phases == [Phase(2, (SMALL, NONE, MID)), Phase(1, (BIG,))]


def test_each_workers_copy_of_the_inputs_counts():
    # 1 GiB held by each of 2 workers leaves 8: MID (4 GiB) still fits twice; with 1.5 GiB held it does not
    assert plan_phases([MID], PEAKS, Budget(10 * GIB, "test"), workers=2, held=GIB) == [Phase(2, (MID,))]
    assert plan_phases([MID], PEAKS, Budget(10 * GIB, "test"), workers=2, held=3 * GIB // 2) == [Phase(1, (MID,))]


def test_a_chunk_that_cannot_fit_alone_is_refused_naming_it_the_estimate_and_the_limit(monkeypatch):
    with pytest.raises(MemoryLimitError) as caught:
        plan_phases([SMALL, BIG], PEAKS, Budget(5 * GIB, "MemAvailable in /proc/meminfo"), workers=2)
    message = str(caught.value)
    for part in ("model 'gp' at training size 1400", "6.0 GiB", "5.0 GiB is free", "MemAvailable", f"{ENV}=off"):
        assert part in message, message
    monkeypatch.setenv(ENV, "off")  # an expert's way through
    assert plan_phases([SMALL, BIG], PEAKS, Budget(5 * GIB, "test"), workers=2) == [Phase(2, (SMALL, BIG))]


def test_an_unknown_budget_runs_everything_at_once():
    assert plan_phases([BIG, SMALL], PEAKS, None, workers=2) == [Phase(2, (BIG, SMALL))]


def test_a_gps_estimate_is_its_fit_program_plus_the_staged_folds():
    """What GPModel.peak_bytes adds up (gpllm.gp.memory.fold_fits_peak_bytes): float64 below
    float64_below, the direct path's wider products for per-gene scales, one fold in flight on
    CPU plus every fold's staged copies."""
    n, g, q, folds = 500, 2000, 50, 5
    at_once = default_batch_size(folds)

    def expected(n, dtype, per_output=False):
        program = FIT_SQUARES * n * n + FIT_ROWS * n * g + (2 * n * (g - n) if per_output else 0)
        return np.dtype(dtype).itemsize * (at_once * program + folds * n * (STAGED_ROWS * g + 2 * q))

    shared = GPModel(dtype="float32")
    assert shared.peak_bytes(n, g, q, folds) == expected(n, "float32")
    scaled = rbf_or_rbf_linear("float32")
    assert scaled.peak_bytes(n, g, q, folds) == expected(n, "float32", per_output=True) > expected(n, "float32")
    small = "float64" if float64_enabled() else "float32"  # a float32 GP fits fewer than 300 points in float64
    assert shared.peak_bytes(100, g, q, folds) == expected(100, small)


def test_the_gp_estimate_covers_its_compiled_programs_own_buffers():
    """XLA's memory analysis of the very program GPModel runs (fit, condition, predict and leave
    one out, folds looped as on CPU): its temporaries, arguments and outputs stay within the
    estimate. (One compile, the sweep's shared scales, to keep the suite's time.)"""
    from gpllm.gp import api
    from gpllm.gp.fit import FitOptions
    from gpllm.gp.kernels import RBF

    n, d, q, m, folds = 300, 600, 20, 80, 2
    spec = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    options = FitOptions()
    compiled = api._fit_predict_batched_jit.lower(
        RBF(), spec(folds, n, q), spec(folds, n, d), None, spec(folds, m, q), options, True, "refitted_mean", 1, None
    ).compile()
    analysis = compiled.memory_analysis()
    used = analysis.temp_size_in_bytes + analysis.argument_size_in_bytes + analysis.output_size_in_bytes
    estimate = fold_fits_peak_bytes(n, d, q, np.float32, folds, 1)
    assert used <= estimate, (used, estimate)


def test_every_chunk_counts_what_the_sweep_holds_around_its_model():
    n, m, g, q, folds = 700, 355, 2000, 50, 5
    folds_bytes = folds * (n * (g + q) + m * q)
    fits_bytes = folds * 2 * (m + n) * g
    assert sweep_held_bytes(n, m, g, q, folds) == 8 * (folds_bytes + fits_bytes + 2 * m * g)


def test_the_sweep_refuses_before_the_first_chunk(monkeypatch, tmp_path):
    from gpllm.data.embeddings.assemble import build_embedding
    from gpllm.data.synthetic.screens import make_screens

    draw = make_screens(1, n_perts=40, n_genes=30)
    embeddings = {"text": build_embedding({"text": draw.vectors["text"]}, draw.screens["K562"].perts, k=4)}
    config = SweepConfig(models=("ridge", "gp"), embeddings=("text",), sizes=(12, 20), n_folds=2, seed=0)
    monkeypatch.setattr(sweep, "device_budget", lambda: Budget(1000, "a test's budget"))
    store = RunStore(tmp_path / "run")
    with pytest.raises(MemoryLimitError, match=r"model 'gp' at training size 20 .*0.0 MiB is free \(a test's budget\)"):
        sweep.run_sweep(draw.screens, embeddings, config, store, data_id="t", progress=False)
    assert not list((tmp_path / "run").rglob("*.parquet"))  # nothing ran, not even ridge


def test_crowded_chunks_get_fewer_workers_at_once(monkeypatch):
    monkeypatch.setattr(sweep, "device_budget", lambda: Budget(10 * GIB, "a test's budget"))
    no_inputs = type("Context", (), {"screens": {}, "embeddings": {}})()
    phases = sweep._memory_phases(LocalExecutor(2), [BIG, SMALL], PEAKS, no_inputs)  # type: ignore[arg-type]
    assert [(e, c) for e, c in phases] == [(LocalExecutor(2, 2), (SMALL,)), (LocalExecutor(2, 1), (BIG,))]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_one_worker_at_once_keeps_the_cores_it_has_among_two():
    results = run_chains(CHAINS, record, {"scale": 1}, workers=2, at_once=1)
    assert [[r[:2] for r in chain] for chain in results] == [[(n, v) for n, v in chain] for chain in CHAINS]
    assert len({r[2] for chain in results for r in chain}) == 1  # one process ran them all
    assert {r[3] for chain in results for r in chain} == {core_groups(2)[0]}


def test_at_once_must_be_positive():
    with pytest.raises(InputError, match="at_once must be >= 1, got 0"):
        run_chains(CHAINS, record, {"scale": 1}, workers=2, at_once=0)

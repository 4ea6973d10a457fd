"""The sweep on a Dask cluster: a real ``distributed.LocalCluster`` of 2 worker processes."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from gpllm.errors import InputError, WorkerError
from gpllm.evaluate.compare import table_differences
from gpllm.evaluate.runner.dask_executor import DaskExecutor, pin_local_workers
from gpllm.evaluate.runner.executors import LocalExecutor, check_executor, open_executor
from gpllm.evaluate.runner.numerics import current_numerics, local_numerics, xla_cpu_threads
from gpllm.evaluate.runner.workers import available_cores, pin_process
from gpllm.reproduce import reproduce
from gpllm.run_config import ReproduceConfig

distributed = pytest.importorskip("distributed")

CHAINS = [[("a", 1), ("a", 2), ("a", 3)], [("b", 10)], [("c", 5), ("c", 6)]]
SMALL = {"kind": "synthetic", "seed": 3, "overrides": {"n_perts": 60, "n_genes": 40}}
N_WORKERS = 2


def record(item, context):
    """A task: its result, and the order in which tasks ran (a file per chain)."""
    name, value = item
    if value == context.get("fail_on"):
        raise context["error"]
    marker = Path(context["root"]) / f"died-{value}"
    if value == context.get("die_once_on") and not marker.exists():
        marker.touch()
        os._exit(9)  # the worker process dies mid-task, as under the out-of-memory killer
    with open(Path(context["root"]) / f"order-{name}", "a") as log:
        log.write(f"{value}\n")
    return name, value * context["scale"]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=N_WORKERS, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as c:
        yield c


@pytest.fixture
def dask(cluster):
    executor = open_executor("dask://" + cluster.scheduler_address.removeprefix("tcp://"))
    # Every test starts on the whole cluster: one that kills a worker returns while its nanny
    # is still starting a new one, and the next would find one worker (pinned to every core).
    executor.client.wait_for_workers(N_WORKERS, timeout=60)
    yield executor
    executor.close()


@pytest.mark.slow
def test_chains_on_dask_match_local_and_keep_their_order(dask, tmp_path):
    events = []
    context = {"scale": 2, "root": str(tmp_path)}
    there = dask.run_chains(CHAINS, record, context, lambda kind, item: events.append((kind, item)))
    (tmp_path / "here").mkdir()
    here = LocalExecutor(1).run_chains(CHAINS, record, {"scale": 2, "root": str(tmp_path / "here")}, lambda *a: None)
    assert there == here == [[("a", 2), ("a", 4), ("a", 6)], [("b", 20)], [("c", 10), ("c", 12)]]
    assert (tmp_path / "order-a").read_text().split() == ["1", "2", "3"]
    for chain in CHAINS:
        for item in chain:
            assert events.index(("start", item)) < events.index(("done", item))
    assert "2 workers" in dask.label


def test_a_gpllm_error_on_a_worker_comes_back_as_itself(dask, tmp_path):
    context = {"scale": 1, "root": str(tmp_path), "fail_on": 2, "error": InputError("bad gene 'XYZ'")}
    with pytest.raises(InputError, match="bad gene 'XYZ'"):
        dask.run_chains(CHAINS, record, context, lambda *a: None)


def test_another_error_is_a_worker_error_with_the_traceback(dask, tmp_path):
    context = {"scale": 1, "root": str(tmp_path), "fail_on": 6, "error": ZeroDivisionError("boom")}
    with pytest.raises(WorkerError, match="ZeroDivisionError: boom") as caught:
        dask.run_chains(CHAINS, record, context, lambda *a: None)
    assert "Traceback" in caught.value.details


def test_a_worker_lost_mid_chain_is_retried_not_skipped(dask, tmp_path):
    context = {"scale": 1, "root": str(tmp_path), "die_once_on": 2}
    results = dask.run_chains(CHAINS, record, context, lambda *a: None)
    assert results == [[("a", 1), ("a", 2), ("a", 3)], [("b", 10)], [("c", 5), ("c", 6)]]
    assert (tmp_path / "died-2").exists()
    assert (tmp_path / "order-a").read_text().split() == ["1", "2", "3"]


@pytest.mark.slow
def test_reproduce_on_dask_gives_the_local_table(dask, tmp_path):
    config = ReproduceConfig.from_dict(
        {
            "name": "dask",
            "data": SMALL,
            "embeddings": ["text"],
            "sweep": {"sizes": [20, 40], "n_folds": 2, "models": ["gp", "nonctrl_mean"]},
        }
    )
    local = reproduce(config, tmp_path / "local", progress=False, workers=1).results
    remote = reproduce(config, tmp_path / "dask", progress=False, executor=dask).results
    assert table_differences(local, remote) == []  # the GP's record left out: its LML's last digits may differ
    # a folder started on the cluster resumes locally with nothing left to do
    again = reproduce(config, tmp_path / "dask", progress=False, workers=1).results
    assert again.equals(remote)


def numerics_and_blas(item, context):
    """A task: the worker's numerical settings, and the thread count of each OpenBLAS loaded."""
    from threadpoolctl import threadpool_info

    return current_numerics(), [pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"]


def test_tasks_run_openblas_on_as_many_threads_as_xla(dask):
    """Dask's nanny starts workers with OPENBLAS_NUM_THREADS=1 whatever their CPUs; local
    workers have one thread per core of their group, for XLA and OpenBLAS alike."""
    results = dask.run_chains([[1], [2]], numerics_and_blas, None, lambda *a: None)
    for [(numerics, blas)] in results:
        assert blas and all(threads == numerics.threads for threads in blas), (numerics, blas)


def test_a_worker_unlike_the_local_run_is_warned_about_once(dask, caplog):
    seen = set(dask.client.run(current_numerics).values())
    assert len(seen) == 1  # both workers of the cluster alike
    [actual] = seen
    quiet = DaskExecutor(dask.client, dask.address, match=actual)
    with caplog.at_level(logging.WARNING, logger="gpllm.evaluate.runner.dask_executor"):
        quiet.run_chains(CHAINS, numerics_and_blas, None, lambda *a: None)
    assert caplog.records == []
    unlike = DaskExecutor(dask.client, dask.address, match=actual._replace(threads=actual.threads + 1))
    with caplog.at_level(logging.WARNING, logger="gpllm.evaluate.runner.dask_executor"):
        unlike.run_chains(CHAINS, numerics_and_blas, None, lambda *a: None)
    [warning] = caplog.records
    assert f"{actual.threads} CPU thread(s) for XLA and OpenBLAS, not {actual.threads + 1}" in warning.message
    assert f"start each worker process on {actual.threads + 1} CPU(s)" in warning.message


@pytest.mark.slow
def test_pinned_workers_of_a_local_cluster_run_with_local_workers_numerics():
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c,
        distributed.Client(c) as client,
    ):
        pin_local_workers(client)
        executor = DaskExecutor(client, c.scheduler_address, match=local_numerics(2))
        results = executor.run_chains([[1], [2]], numerics_and_blas, None, lambda *a: None)
    assert [numerics for [(numerics, _)] in results] == [local_numerics(2)] * 2


def test_pinning_workers_in_which_jax_has_started_is_an_error(dask):
    cores = available_cores()
    if len(cores) < 2:
        pytest.skip("on one core, a worker's pool has its one-core group's size whenever JAX started")
    dask.client.run(xla_cpu_threads)  # JAX starts in both workers, its pool on every core
    try:
        with pytest.raises(InputError, match="before they were pinned"):
            pin_local_workers(dask.client)
    finally:
        dask.client.run(pin_process, cores)


@pytest.mark.parametrize("spec", ["dask://", "dask://host", "dask://host:port", "spark://h:1", "tcp://:80", 7])
def test_a_malformed_executor_is_named(spec):
    with pytest.raises(InputError, match="executor"):
        check_executor(spec)


@pytest.mark.slow
def test_an_unreachable_cluster_fails_in_seconds_and_leaves_no_folder(tmp_path):
    from typer.testing import CliRunner

    from gpllm.cli import app

    out = tmp_path / "run"
    started = time.perf_counter()
    result = CliRunner().invoke(
        app, ["reproduce", "--executor", "dask://127.0.0.1:9", "--out", str(out), "--sizes", "20", "--no-progress"]
    )
    assert result.exit_code == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert time.perf_counter() - started < 30  # a generous bound on a 5 s timeout, not a benchmark
    assert not out.exists()

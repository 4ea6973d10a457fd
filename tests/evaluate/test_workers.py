"""Chains of tasks over worker processes: same results as in-process, order kept, errors named."""

from __future__ import annotations

import os
import threading

import pytest

from gpllm.errors import InputError, WorkerError
from gpllm.evaluate.runner.workers import core_groups, run_chains

CHAINS = [[("a", 1), ("a", 2), ("a", 3)], [("b", 10)], [("c", 5), ("c", 6)]]


def record(item, context):
    """A task: what it was given, which process ran it, on which cores."""
    name, value = item
    if value == context.get("fail_on"):
        raise context["error"]
    if value == context.get("die_on"):
        os._exit(9)  # as the out-of-memory killer would
    return name, value * context["scale"], os.getpid(), tuple(sorted(os.sched_getaffinity(0)))


@pytest.mark.slow
def test_workers_give_the_results_of_an_in_process_run():
    events = []
    here = run_chains(CHAINS, record, {"scale": 2}, workers=1)
    there = run_chains(CHAINS, record, {"scale": 2}, workers=2, on_event=lambda kind, item: events.append((kind, item)))
    strip = lambda results: [[r[:2] for r in chain] for chain in results]  # noqa: E731
    assert strip(there) == strip(here) == [[("a", 2), ("a", 4), ("a", 6)], [("b", 20)], [("c", 10), ("c", 12)]]
    assert {r[2] for chain in here for r in chain} == {os.getpid()}
    assert os.getpid() not in {r[2] for chain in there for r in chain}
    # every item starts, then finishes; within a chain, in order and in one process
    for chain, results in zip(CHAINS, there):
        assert len({r[2] for r in results}) == 1
        positions = [events.index(("done", item)) for item in chain]
        assert positions == sorted(positions)
        assert all(events.index(("start", item)) < events.index(("done", item)) for item in chain)
    assert len(events) == 2 * sum(len(c) for c in CHAINS)


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_each_worker_is_pinned_to_its_own_cores():
    results = run_chains(CHAINS, record, {"scale": 1}, workers=2)
    cores_by_process = {r[2]: r[3] for chain in results for r in chain}
    groups = core_groups(2)
    assert set(cores_by_process.values()) <= set(groups)
    assert len(groups) == 2 and not set(groups[0]) & set(groups[1])


def test_core_groups_are_disjoint_and_equal():
    assert core_groups(2, [0, 1, 2, 3, 4]) == [(0, 1), (2, 3)]
    assert core_groups(3, [4, 5]) == [(4,), (5,), (4,)]  # more workers than cores: shared round-robin


def test_gpllm_errors_arrive_as_themselves():
    with pytest.raises(InputError, match="bad gene 'XYZ'"):
        run_chains(CHAINS, record, {"scale": 1, "fail_on": 2, "error": InputError("bad gene 'XYZ'")}, workers=2)


@pytest.mark.slow
def test_other_errors_arrive_as_one_line_with_the_workers_traceback_attached():
    with pytest.raises(WorkerError, match=r"failed on \(.c., 6\): ZeroDivisionError: boom$") as caught:
        run_chains(CHAINS, record, {"scale": 1, "fail_on": 6, "error": ZeroDivisionError("boom")}, workers=2)
    assert "\n" not in str(caught.value)
    assert "in record" in caught.value.details and "ZeroDivisionError: boom" in caught.value.details


@pytest.mark.slow
def test_a_killed_worker_is_reported_not_waited_for():
    with pytest.raises(WorkerError, match=r"died \(exit code 9"):
        run_chains(CHAINS, record, {"scale": 1, "die_on": 10}, workers=2)


def test_workers_must_be_positive():
    with pytest.raises(InputError, match="workers must be >= 1"):
        run_chains(CHAINS, record, {"scale": 1}, workers=0)


@pytest.mark.slow
def test_one_chain_still_runs_in_a_worker_on_its_share_of_the_cores():
    """A resumed run may have one chain left: it must get the cores it would have had."""
    [[result]] = run_chains([[("a", 1)]], record, {"scale": 1}, workers=2)
    assert result[2] != os.getpid()
    assert result[3] == core_groups(2)[0]


def test_an_unpicklable_context_is_named():
    with pytest.raises(InputError, match="picklable context.*use workers=1"):
        run_chains(CHAINS, record, {"scale": 1, "lock": threading.Lock()}, workers=2)

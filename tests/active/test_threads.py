"""Chains run on threads of one process: each chain in order, the first error stops the rest,
and a design simulation's rows do not depend on how many chains run at once."""

from __future__ import annotations

import threading

import pytest

from gpllm.active.run import load_configs, run_active
from gpllm.evaluate.runner.executors import LocalExecutor, run_chains_in_threads
from tests.active.helpers import write_tiny_config


def test_each_chain_runs_in_order_and_returns_its_results():
    seen = []
    lock = threading.Lock()

    def task(item, context):
        with lock:
            seen.append(item)
        return item * context

    chains = [[1, 2, 3], [10, 20], [], [7]]
    events = []
    assert LocalExecutor(threads=3).run_chains(chains, task, 2, lambda kind, item: events.append((kind, item))) == [
        [2, 4, 6],
        [20, 40],
        [],
        [14],
    ]
    for chain in chains:
        assert [item for item in seen if item in chain] == chain
    assert sorted(item for kind, item in events if kind == "done") == sorted(seen)


def test_the_first_error_stops_every_chain_and_is_raised():
    started = []
    second_may_go = threading.Event()

    def task(item, context):
        started.append(item)
        if item == "bad":
            second_may_go.set()
            raise KeyboardInterrupt  # as a user's Ctrl-C inside a task: not only Exceptions
        second_may_go.wait(timeout=10)
        return item

    chains = [["bad", "never"], ["a", "b", "c"]]
    with pytest.raises(KeyboardInterrupt):
        run_chains_in_threads(chains, task, None, lambda kind, item: None, threads=2)
    assert "never" not in started
    assert "b" not in started or "c" not in started  # the other chain ends its running task, no more


@pytest.mark.slow
def test_rows_do_not_depend_on_the_chains_at_once(tmp_path):
    """Two acquisitions, two repeats: round 0 served from a sibling's part, GP rounds at every size."""
    config = write_tiny_config(tmp_path, ["random", "max_variance"], {})
    one = run_active(*load_configs(config), tmp_path / "one", progress=False, threads=1)
    three = run_active(*load_configs(config), tmp_path / "three", progress=False, threads=3)
    assert one.results.height == 2 * 2 * 3
    assert three.results.equals(one.results)

"""Where the sweep's chains run: local worker processes, or a Dask cluster.

An executor runs independent *chains* of tasks (a chain in order; see
:func:`gpllm.evaluate.runner.workers.run_chains`) and relays each task's start and
end to a callback. What a task computes never depends on the executor: it
reads its inputs from the context it is handed and its warm start from the
run folder, and writes its sealed part there, so a run may be started on a
cluster and resumed on a laptop (and the other way round) over the same folder.
How it rounds depends on the threads it runs with and XLA_FLAGS
(:mod:`gpllm.evaluate.runner.numerics`): a cluster's table equals a local run's,
bit for bit, where its workers run with the local workers' thread count on the
same CPU type; otherwise float32 GP rows differ in rounding (~1e-3 in
pearson_de), and the Dask executor warns.

- ``"local"`` (the default): this process, or ``workers`` spawned processes
  pinned to the cores (:mod:`gpllm.evaluate.runner.workers`).
- ``"dask://HOST:PORT"``: the scheduler of a running ``dask.distributed``
  cluster (``tcp://`` addresses are taken as they are). The run folder must
  be on storage every worker sees (:mod:`gpllm.evaluate.runner.dask_executor`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from gpllm.errors import InputError
from gpllm.evaluate.runner.numerics import TaskNumerics, local_numerics

#: Executor strings that mean "this machine".
LOCAL = "local"
DASK_SCHEME = "dask://"


class Executor(Protocol):
    """Runs chains of ``task(item, context)``; ``label`` says where, for the progress bar."""

    label: str

    def run_chains(
        self, chains: Sequence[Sequence[Any]], task: Callable, context: Any, on_event: Callable[[str, Any], None]
    ) -> list[list[Any]]: ...

    def close(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class LocalExecutor:
    """This process (``workers`` = 1) or that many spawned worker processes (None: one per core).

    at_once: at most this many of them started (default all), each on the cores it would
    have among ``workers``, so that its tasks round as they would with all running.
    shared_cores: every worker runs on all the cores with this process's thread counts, so
    its tasks round as they would in this process (the OS shares the cores); otherwise each
    worker gets its own group of cores (:func:`~gpllm.evaluate.runner.workers.core_groups`).
    threads: with one process, this many chains at once in it (:func:`run_chains_in_threads`).
    """

    workers: int | None = 1
    at_once: int | None = None
    shared_cores: bool = False
    threads: int = 1

    @property
    def label(self) -> str:
        count = self.count()
        if count == 1:
            return ""
        return f"{count} workers" if (self.at_once or count) >= count else f"{self.at_once} of {count} workers at once"

    def count(self) -> int:
        """How many processes run the chains (1: this one)."""
        from gpllm.evaluate.runner.workers import default_workers

        return self.workers if self.workers is not None else default_workers()

    def run_chains(self, chains, task, context, on_event):
        from gpllm.evaluate.runner.workers import run_chains

        if self.count() == 1 and self.threads > 1:
            return run_chains_in_threads(chains, task, context, on_event, self.threads)
        return run_chains(
            chains,
            task,
            context,
            workers=self.count(),
            on_event=on_event,
            at_once=self.at_once,
            shared_cores=self.shared_cores,
        )

    def numerics(self) -> TaskNumerics:
        """The numerical settings its tasks run with (:mod:`gpllm.evaluate.runner.numerics`)."""
        return local_numerics(1 if self.shared_cores else self.count())

    def close(self) -> None:
        pass


def run_chains_in_threads(chains, task, context, on_event, threads: int) -> list[list[Any]]:
    """``task(item, context)`` for every item, in order within each chain, ``threads`` chains at
    once in this process; results per chain. The first error (in any chain) stops the others
    from starting tasks and is raised once the running ones end.

    Why threads: JAX computes and compiles without the GIL, and threads share this process's
    compiled programs and XLA's one thread pool, so a task rounds as it would alone.
    """
    import concurrent.futures
    import threading

    failed = threading.Event()

    def run(chain) -> list:
        results = []
        for item in chain:
            if failed.is_set():
                break
            on_event("start", item)
            try:
                results.append(task(item, context))
            except BaseException:
                failed.set()
                raise
            on_event("done", item)
        return results

    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="chain") as pool:
        futures = [pool.submit(run, chain) for chain in chains]
        try:
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C while waiting: the running tasks end, no other starts
            failed.set()
            raise
        errors = [future.exception() for future in futures if future.done() and future.exception()]
        if errors:
            failed.set()
            for future in futures:
                future.cancel()
            concurrent.futures.wait(futures)
            raise errors[0]
        return [future.result() for future in futures]


def check_executor(spec: str | None) -> str:
    """``spec`` normalised ("local", or a scheduler address ``tcp://HOST:PORT``); InputError
    naming what is wrong with it. Connects to nothing."""
    if spec in (None, "", LOCAL):
        return LOCAL
    if not isinstance(spec, str):
        raise InputError(f"executor must be 'local' or 'dask://HOST:PORT', got {spec!r}")
    address = "tcp://" + spec[len(DASK_SCHEME) :] if spec.startswith(DASK_SCHEME) else spec
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not address.startswith("tcp://") or not host or not port.isdigit():
        raise InputError(f"executor {spec!r}: expected 'local' or 'dask://HOST:PORT' (e.g. dask://10.0.0.5:8786)")
    return address


def open_executor(spec: str | None = LOCAL, *, workers: int | None = 1, timeout: float = 5.0) -> Executor:
    """The executor ``spec`` names, ready to run: a Dask cluster is connected to now, so an
    unreachable one fails within ``timeout`` seconds, before any run folder is made."""
    address = check_executor(spec)
    if workers is not None and workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if address == LOCAL:
        return LocalExecutor(workers)
    from gpllm.evaluate.runner.dask_executor import DaskExecutor

    # Checked against the local run of the same command, with the same ``workers``.
    return DaskExecutor.connect(address, timeout=timeout, match=LocalExecutor(workers).numerics())

"""The sweep's chains on a ``dask.distributed`` cluster.

Each task becomes one Dask task, submitted when the one before it in its
chain has finished, so a chain runs in order (a GP size warm-starts from the
stored fit at the smaller one) while different chains spread over the
cluster. (Not as a Dask dependency: the scheduler would then recompute a
finished task whose worker was lost, to hand its result to the next one.) The
context is sent to the workers once (``scatter``, broadcast), and every task
first copies the parent's JAX settings (float64, the compilation cache), as
local workers do.

Numbers: a task rounds as a local worker's does when it runs with the same
thread count and XLA_FLAGS (:mod:`gpllm.evaluate.runner.numerics`). Each task sets
OpenBLAS to its worker's CPU count, as local workers have it, and reports the
worker's settings; XLA's thread pool and XLA_FLAGS are fixed when JAX starts in
the worker, so where they differ from the local run's the parent warns, once
per kind of worker, saying how to start the workers instead. On one machine,
:func:`pin_local_workers` pins a ``LocalCluster``'s workers as local workers are.

Failures:

- a task that raises stops the run: gpllm's own errors come back as
  themselves, anything else as a :class:`~gpllm.errors.WorkerError` with the
  worker's traceback; the other tasks are cancelled, and what finished stays
  in the run folder;
- a worker lost mid-task (killed, out of memory, its machine gone) is not an
  error of the task: the scheduler reruns the task on another worker, up to
  its ``distributed.scheduler.allowed-failures`` times (default 3); beyond
  that the run stops with a WorkerError naming the task, never skipping it.

The run folder must be on storage that every worker sees at the same path
(the parent passes an absolute path).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from gpllm.errors import GPLLMError, InputError, WorkerError
from gpllm.evaluate.runner.numerics import TaskNumerics

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DaskExecutor:
    """A connected ``distributed.Client``; :meth:`close` disconnects (the cluster stays up).

    match: the numerical settings of the local run the results should equal
    (:func:`~gpllm.evaluate.runner.numerics.local_numerics`); None checks nothing.
    """

    client: Any
    address: str
    match: TaskNumerics | None = None

    @classmethod
    def connect(cls, address: str, *, timeout: float = 5.0, match: TaskNumerics | None = None) -> DaskExecutor:
        """Connect to the scheduler at ``address`` (``tcp://HOST:PORT``); InputError within
        ``timeout`` seconds if it cannot be reached, or if dask.distributed is not installed."""
        try:
            from distributed import Client
        except ImportError:
            raise InputError(
                f"executor {address}: dask.distributed is not installed (pip install 'gpllm[dask]')"
            ) from None
        not_dask = _not_a_scheduler(address, timeout)
        if not_dask:
            raise InputError(f"{address} is not a Dask scheduler: {not_dask}; is the address right?")
        try:
            client = Client(address, timeout=f"{timeout}s", set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise InputError(
                f"cannot reach the Dask scheduler at {address} within {timeout:g} s ({err}); "
                "is the cluster running, and is the address right?"
            ) from None
        return cls(client, address, match)

    @property
    def label(self) -> str:
        workers = len(self.client.scheduler_info().get("workers", {}))
        return f"dask {self.address}, {workers} workers"

    def run_chains(
        self, chains: Sequence[Sequence[Any]], task: Callable, context: Any, on_event: Callable[[str, Any], None]
    ) -> list[list[Any]]:
        """``task(item, context)`` for every item, in order within each chain; results per chain."""
        from distributed import as_completed

        from gpllm.evaluate.runner.workers import jax_settings

        shared = {"context": self.client.scatter(context, broadcast=True, hash=False)}
        settings = jax_settings()
        run = uuid.uuid4().hex[:8]
        where: dict[str, tuple[int, int]] = {}
        resubmitted: dict[tuple[int, int], int] = {}

        def submit(c: int, p: int):
            tries = resubmitted.get((c, p), 0)
            future = self.client.submit(
                _run_task,
                task,
                chains[c][p],
                shared["context"],
                settings,
                key=f"gpllm-{run}-{c}-{p}-{tries}",
                pure=False,
            )
            where[future.key] = (c, p)
            on_event("start", chains[c][p])
            return future

        pending = as_completed([submit(c, 0) for c, chain in enumerate(chains) if chain], loop=self.client.loop)
        results: list[list[Any]] = [[None] * len(chain) for chain in chains]
        warned: set[TaskNumerics] = set()
        try:
            for future in pending:
                c, p = where[future.key]
                if future.status == "cancelled" and resubmitted.get((c, p), 0) < LOST_DATA_RETRIES:
                    # A dead worker can take the scattered context with it (the scheduler
                    # cannot recompute scattered data) and cancel what needs it: scatter
                    # again and rerun the link, as Dask reruns a lost worker's task.
                    resubmitted[c, p] = resubmitted.get((c, p), 0) + 1
                    shared["context"] = self.client.scatter(context, broadcast=True, hash=False)
                    pending.add(submit(c, p))
                    continue
                if future.status != "finished":
                    _raise_failure(future, chains[c][p])
                results[c][p], numerics, worker = future.result()
                future.release()
                if self.match is not None and numerics not in warned and numerics != self.match:
                    warned.add(numerics)
                    log.warning("%s", _mismatch_note(worker, numerics, self.match))
                on_event("done", chains[c][p])
                if p + 1 < len(chains[c]):
                    pending.add(submit(c, p + 1))
        finally:
            pending.clear()  # cancels what is still queued or running
        return results

    def close(self) -> None:
        self.client.close()


#: Times one link is rerun after the data it needed was lost with a worker.
LOST_DATA_RETRIES = 3


def _run_task(task: Callable, item: Any, context: Any, settings: dict) -> tuple[Any, TaskNumerics, str]:
    """On a worker: the parent's JAX settings and OpenBLAS threads as a local worker has
    them, then the task -> (its result, the worker's numerical settings, its address)."""
    import jax
    from distributed import get_worker

    from gpllm.evaluate.runner.numerics import current_numerics, match_blas

    for name, value in settings.items():
        jax.config.update(name, value)
    numerics = current_numerics()
    match_blas(numerics.threads)
    return task(item, context), numerics, get_worker().address


def _mismatch_note(worker: str, numerics: TaskNumerics, match: TaskNumerics) -> str:
    return (
        f"Dask worker {worker} runs its tasks with {'; '.join(numerics.differences(match))} as a local "
        f"run of this command does, so its results differ from a local run's in rounding (float32 GP "
        f"fits by ~1e-3 in pearson_de). To match, start each worker process on {match.threads} CPU(s)"
        f"{' with the same XLA_FLAGS' if numerics.xla_flags != match.xla_flags else ''}: see the docs, "
        "docs/guides/scale.md, 'On a Dask cluster'."
    )


def pin_local_workers(client: Any) -> None:
    """Pin each worker process of a Dask cluster on this machine to its own group of cores,
    as local workers are (:func:`~gpllm.evaluate.runner.workers.core_groups`), so that its tasks
    run with a local run's numbers. JAX sizes its CPU thread pool when it starts in a
    worker, so it must not have started there yet (a task, or a main module that starts
    JAX on import, which Dask's workers import when they start): InputError naming the
    workers whose pool is not their group's size. A worker the nanny restarts later is
    not pinned."""
    from gpllm.evaluate.runner.numerics import xla_cpu_threads
    from gpllm.evaluate.runner.workers import core_groups, pin_process

    workers = sorted(client.scheduler_info()["workers"])
    groups = dict(zip(workers, core_groups(len(workers)), strict=True))
    for address, cores in groups.items():
        client.run(pin_process, cores, workers=[address])
    pools = client.run(xla_cpu_threads)
    wrong = {address: threads for address, threads in pools.items() if threads != len(groups[address])}
    if wrong:
        raise InputError(
            f"Dask worker(s) {wrong} have XLA CPU thread pools of that size, not "
            f"{len(next(iter(groups.values())))}: JAX had started in them before they were "
            "pinned (does the main module, which Dask's workers import, start JAX?)"
        )


def _raise_failure(future: Any, item: Any) -> None:
    from distributed.scheduler import KilledWorker

    if future.status == "cancelled":
        raise WorkerError(
            f"Dask cancelled {item!r} {LOST_DATA_RETRIES + 1} times (the data it needed was lost with "
            "its workers); the run stopped there (finished results are kept: run the same command "
            "again to resume)"
        )
    err = future.exception()
    if isinstance(err, KilledWorker):
        raise WorkerError(
            f"Dask workers died each time they ran {item!r} ({err}); the run stopped there "
            "(finished results are kept: run the same command again to resume)"
        ) from None
    if isinstance(err, GPLLMError):
        raise err
    import traceback

    text = "".join(traceback.format_exception(type(err), err, future.traceback()))
    raise WorkerError(f"a Dask worker failed on {item!r}: {type(err).__name__}: {err}", details=text) from None


def _not_a_scheduler(address: str, timeout: float) -> str | None:
    """Why the server at a ``tcp://`` ``address`` is not a Dask scheduler, or None if it may be one
    (or cannot be reached: the Client says so). A scheduler writes its handshake as soon as a
    connection opens, a message that starts with its 8-byte length; a server that stays silent
    (an HTTP server) or sends other bytes would leave the Client waiting, or reading a length
    of exabytes."""
    import socket
    import struct

    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("", "tcp") or not port.isdigit():
        return None
    try:
        sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except OSError:
        return None  # unreachable: the Client's own error says so
    head = b""
    with sock:
        try:
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return "it closed the connection without a Dask handshake"
                head += chunk
        except TimeoutError:
            return f"it sent no Dask handshake within {timeout:g} s of connecting"
        except OSError as err:
            return f"the connection broke before a Dask handshake ({err})"
    (length,) = struct.unpack("<Q", head)
    return None if length < 1 << 31 else f"its first bytes {head!r} are not a Dask message"

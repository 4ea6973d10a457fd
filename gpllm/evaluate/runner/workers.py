"""Independent chains of tasks, run in order within a chain, spread over worker processes.

Why processes: on CPU, at the sweep's sizes (N <= 1400), XLA's GEMMs and
LAPACK's Cholesky and triangular solves keep two cores only partly busy, and
the Python and NumPy between them use one. Two single-core workers on a
2-core machine run the default ``gpllm reproduce`` grid in ~230 s against
~285 s for one process using both cores (``python -m benchmarks.sweep``; ~325 s
before OpenBLAS's idle spinning was limited, :mod:`gpllm.blas`).

A *chain* is a list of tasks that must run in order in one process (a GP
chain warm-starts each training size from the stored fit at the smaller
one); chains are independent of each other. Workers are fresh ``spawn``
processes (JAX does not survive ``fork``). Each pins itself to its own group
of cores with ``sched_setaffinity`` before JAX starts its thread pool, with
BLAS threads matched to the group, and all groups are the same size: a
task's numbers do not depend on which worker ran it (they can differ in
rounding from an in-process run, whose XLA uses every core).

The parent hands out chains, longest first as the caller orders them, and
relays each task's start and end to a callback (the progress bar). A task
that raises stops the run: the error is re-raised in the parent (gpllm's
own errors as themselves, anything else as a one-line :class:`WorkerError`
carrying the worker's traceback), the other workers are stopped, and
whatever the finished tasks stored stays.

Workers never outlive their parent: each asks Linux to kill it when the
parent dies (``PR_SET_PDEATHSIG``), checks before every task that its parent
is still the one that started it, and the parent turns SIGTERM (what
schedulers and ``timeout`` send) into an orderly stop that ends its workers.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from gpllm.errors import GPLLMError, InputError, WorkerError

T = TypeVar("T")
C = TypeVar("C")
R = TypeVar("R")

#: Upper bound of :func:`default_workers`: each worker holds its own copy of the
#: inputs and of JAX's compiled programs.
MAX_DEFAULT_WORKERS = 8

#: The JAX settings a worker copies from the parent (x64, the compilation cache).
FORWARDED_JAX_SETTINGS = (
    "jax_enable_x64",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
)

_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> list[int]:
    """The CPU cores this process may run on, in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS): count the cores instead
        return list(range(os.cpu_count() or 1))


def default_workers() -> int:
    """One worker per available core on the CPU backend (at most ``MAX_DEFAULT_WORKERS``);
    1 on GPU/TPU, where one process keeps the device busy."""
    import jax

    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(len(available_cores()), MAX_DEFAULT_WORKERS))


def core_groups(workers: int, cores: Sequence[int] | None = None) -> list[tuple[int, ...]]:
    """``workers`` disjoint, equal-sized groups of ``cores`` (left-over cores unused);
    with more workers than cores, single cores shared round-robin."""
    cores = list(available_cores() if cores is None else cores)
    size = max(1, len(cores) // workers)
    return [tuple(cores[(i * size + j) % len(cores)] for j in range(size)) for i in range(workers)]


def pin_process(cores: Sequence[int]) -> None:
    """Pin every thread of this process to ``cores`` (threads started later inherit it);
    a no-op where the OS has no affinity API. Before JAX starts, this also sizes XLA's
    CPU thread pool (:mod:`gpllm.evaluate.runner.numerics`)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: the calling thread, which starts the others
        threads = [0]
    for tid in threads:
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:  # the thread ended meanwhile
            pass


def run_chains(
    chains: Sequence[Sequence[T]],
    task: Callable[[T, C], R],
    context: C,
    *,
    workers: int = 1,
    on_event: Callable[[str, T], None] | None = None,
    at_once: int | None = None,
    shared_cores: bool = False,
) -> list[list[R]]:
    """``task(item, context)`` for every item, in order within each chain; results per chain.

    ``workers`` = 1 runs everything in this process. Otherwise ``task`` must be
    a module-level function and ``context`` picklable (each worker gets a copy
    once). ``on_event("start" | "done", item)`` is called in this process.
    ``at_once``: start at most this many of the workers (default all), each still on
    the cores it has among ``workers`` (e.g. when memory allows fewer).
    ``shared_cores``: every worker runs on all the cores (its thread counts, and so its
    rounding, those of this process) instead of its own group of them.
    """
    for name, value in (("workers", workers), ("at_once", at_once)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    on_event = on_event or (lambda kind, item: None)
    if workers == 1 or not chains:
        return [_run_here(chain, task, context, on_event) for chain in chains]
    # Even one chain goes to a worker: the cores a task gets must not depend on how
    # many chains are left (a resumed run) or run at once, or its rounding would.
    groups = [tuple(available_cores())] * workers if shared_cores else core_groups(workers)
    return _run_in_workers(chains, task, context, groups, on_event, at_once or workers)


def _run_here(chain, task, context, on_event) -> list:
    results = []
    for item in chain:
        on_event("start", item)
        results.append(task(item, context))
        on_event("done", item)
    return results


def _run_in_workers(chains, task, context, groups, on_event, at_once) -> list[list]:
    import multiprocessing
    from multiprocessing.reduction import ForkingPickler

    import numpy as np

    from gpllm.evaluate.runner.shared_inputs import reduce_mapped

    ForkingPickler.register(np.memmap, reduce_mapped)  # a mapped screen crosses as its file name
    ctx = multiprocessing.get_context("spawn")
    jobs, messages = ctx.Queue(), ctx.Queue()
    for index, chain in enumerate(chains):
        jobs.put((index, list(chain)))
    groups = groups[: min(len(chains), at_once)]  # sized for every worker asked for, however many start
    for _ in groups:
        jobs.put(None)
    settings = jax_settings()
    parent = os.getpid()
    processes = [
        ctx.Process(target=_worker, args=(cores, task, context, jobs, messages, settings, parent), daemon=True)
        for cores in groups
    ]
    results: list[list] = [[None] * len(chain) for chain in chains]
    remaining = sum(len(chain) for chain in chains)
    release_free_memory()  # what loading the inputs left behind, before we sit and wait
    with _terminate_raises():  # SIGTERM unwinds through the finally below
        try:
            # Children read these when they start, before any code of ours runs: BLAS
            # thread counts when NumPy loads, and glibc's malloc arenas (its default of
            # 8 per core keeps ~300 MB more per worker resident for nothing here).
            env = {name: str(len(groups[0])) for name in _BLAS_THREAD_VARIABLES}
            with _environment({**env, "MALLOC_ARENA_MAX": "2"}):
                for process in processes:
                    try:
                        process.start()
                    except (TypeError, AttributeError, pickle.PicklingError) as err:
                        raise InputError(
                            f"running in worker processes needs a module-level task and a picklable "
                            f"context ({type(err).__name__}: {err}); use workers=1"
                        ) from err
            quiet = 0  # consecutive empty polls with every worker gone
            while remaining:
                try:
                    kind, index, position, payload = messages.get(timeout=0.5)
                except queue.Empty:
                    quiet = quiet + 1 if _check_alive(processes) else 0
                    if quiet >= 2:  # one more poll first: an exited worker's last messages may be in flight
                        raise WorkerError("every worker exited with tasks left unfinished") from None
                    continue
                item = chains[index][position]
                if kind == "error":
                    _reraise(payload, item)
                if kind == "done":
                    results[index][position] = payload
                    remaining -= 1
                on_event(kind, item)
            for process in processes:
                process.join()
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
                if process.pid is not None:
                    process.join()
    return results


class Terminated(SystemExit):
    """The process received SIGTERM; raised (exit code 143) so that cleanup, stopping the
    workers, runs; a SystemExit, so that no ``except Exception`` swallows it."""


@contextlib.contextmanager
def _terminate_raises() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` (exit code 143) instead of
    ending the process on the spot, so that ``finally`` blocks stop the workers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(143)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux/glibc: the liveness check below still works
        pass
    if os.getppid() != parent:
        os._exit(0)


def _worker(cores, task, context, jobs, messages, settings, parent) -> None:
    """A worker's life: tie itself to its parent, pin to ``cores``, copy JAX settings, run
    chains until told to stop (or until the parent is gone)."""
    _die_with_parent(parent)
    pin_process(cores)
    # Ctrl-C reaches the whole process group; the parent alone decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import jax

    for name, value in settings.items():
        jax.config.update(name, value)
    while (job := jobs.get()) is not None:
        index, chain = job
        for position, item in enumerate(chain):
            if os.getppid() != parent:  # orphaned: write nothing more
                os._exit(0)
            messages.put(("start", index, position, None))
            try:
                result = task(item, context)
            except BaseException as err:  # reported to the parent, which stops the run
                messages.put(("error", index, position, _portable(err)))
                return
            messages.put(("done", index, position, result))
            release_free_memory()


def _portable(err: BaseException) -> tuple[BaseException | None, str]:
    """(the error itself if it survives pickling, else None; its traceback as text)."""
    text = "".join(traceback.format_exception(err))
    try:
        pickle.loads(pickle.dumps(err))
    except Exception:
        return None, text
    return err, text


def _reraise(payload, item) -> None:
    err, text = payload
    if isinstance(err, GPLLMError):
        raise err
    what = f"{type(err).__name__}: {err}" if err is not None else text.strip().splitlines()[-1]
    raise WorkerError(f"a worker failed on {item!r}: {what}", details=text) from None


@contextlib.contextmanager
def named_failures(
    where: Callable[[BaseException], str], hint: Callable[[BaseException], str] = lambda err: ""
) -> Iterator[None]:
    """Inside: an error re-raised as one line that says where it happened (``where(err)``,
    e.g. the model and the fold), the same in this process as in a worker.

    A gpllm error keeps its class and attributes, its message prefixed (and followed by
    ``hint(err)`` where that is not empty; unchanged where ``where(err)`` is empty); anything
    else, an exception or ``sys.exit`` in user code, becomes a :class:`WorkerError` whose
    ``details`` hold the traceback (which the caller appends to its run folder's errors.log).
    SIGTERM's :class:`Terminated` passes.
    """
    try:
        yield
    except Terminated:
        raise
    except GPLLMError as err:
        if not (prefix := where(err)):
            raise
        extra = hint(err)
        raise _renamed(err, f"{prefix}: {err}" + (f"; {extra}" if extra else "")) from err
    except (Exception, SystemExit) as err:
        raise WorkerError(f"{where(err)}: {type(err).__name__}: {err}", traceback.format_exc()) from None


def _renamed(err: GPLLMError, message: str) -> GPLLMError:
    """``err``'s class (and attributes) with ``message``; ``err`` itself where the class
    cannot be built from a message alone."""
    try:
        renamed = type(err)(message)
    except TypeError:
        return err
    renamed.__dict__.update(err.__dict__)
    return renamed


def _check_alive(processes) -> bool:
    """WorkerError if a worker died; True when every worker has exited cleanly."""
    dead = [p for p in processes if p.exitcode not in (None, 0)]
    if dead:
        codes = ", ".join(str(p.exitcode) for p in dead)
        raise WorkerError(
            f"{len(dead)} worker process(es) died (exit code {codes}; -9 is usually the kernel's "
            "out-of-memory killer): rerun with fewer workers; finished results are kept"
        )
    return all(p.exitcode == 0 for p in processes)


def release_free_memory() -> None:
    """Hand memory that is free but still held by glibc's malloc back to the system.

    Compiling and running a GP fit leaves a few hundred MB of freed, fragmented
    heap that glibc keeps resident; with several workers that adds up. A no-op
    where the C library is not glibc.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def jax_settings() -> dict:
    """The JAX settings a worker copies from this process (:data:`FORWARDED_JAX_SETTINGS`)."""
    import jax

    return {name: getattr(jax.config, name) for name in FORWARDED_JAX_SETTINGS}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``values`` inside the block, restored after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

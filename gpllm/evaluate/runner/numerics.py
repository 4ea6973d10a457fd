"""What a task's rounding depends on besides its inputs: the settings executors must share.

On the CPU backend the same task gives the same numbers, bit for bit, given

- JAX's settings (float64): every executor copies the parent's
  (:data:`~gpllm.evaluate.runner.workers.FORWARDED_JAX_SETTINGS`);
- ``XLA_FLAGS``, which XLA reads once, when JAX's backend starts;
- the size of XLA's CPU thread pool, which XLA fixes when its backend starts to
  the number of CPUs the process may run on then (its affinity; pinning the
  process later changes its CPUs, not the pool): reductions are
  split by thread, so another count rounds differently; measured, a float32 GP
  fit at N = 400 predicts values ~2e-5 apart with 1 and 2 threads (~1e-3 in
  pearson_de), a float64 one ~6e-13;
- the thread count of OpenBLAS, in which jaxlib runs the Cholesky and the
  triangular solves;

and the CPU type (XLA compiles for the host's instruction set), but not which
cores or which machine ran it. Both thread counts are one number, ``threads``:
a local worker runs with its group of cores (:mod:`gpllm.evaluate.runner.workers`), a
Dask worker with the CPUs its process was started on, and each of its tasks sets
OpenBLAS to match (:func:`match_blas`). XLA's pool and XLA_FLAGS cannot change
in a running process, so the Dask executor compares what its workers report
with what a local run would use, and warns.

The same holds for the command's own process, which builds the tasks' inputs
(the embeddings' PCA, the synthetic screens) with its BLAS threads: two runs
compared must start from the same environment (OPENBLAS_NUM_THREADS, which a
``distributed.LocalCluster`` writes into the environment of the process that
starts it).
"""

from __future__ import annotations

import os
from typing import NamedTuple


class TaskNumerics(NamedTuple):
    """The settings a task's rounding depends on (module docstring)."""

    backend: str  # JAX's default backend: "cpu", "gpu", ...
    threads: int  # XLA's CPU thread pool, and OpenBLAS's threads
    xla_flags: str  # the XLA_FLAGS environment variable ("" when unset)

    def differences(self, other: TaskNumerics) -> list[str]:
        """What differs from ``other``, one phrase each ("2 threads, not 1"); [] if nothing."""
        out = []
        if self.backend != other.backend:
            out.append(f"the {self.backend} backend, not {other.backend}")
        if self.threads != other.threads:
            out.append(f"{self.threads} CPU thread(s) for XLA and OpenBLAS, not {other.threads}")
        if self.xla_flags != other.xla_flags:
            out.append(f"XLA_FLAGS={self.xla_flags!r}, not {other.xla_flags!r}")
        return out


#: The name of the threads of XLA's CPU pool (tsl's prefix "tf_" and XLA's "XLAEigen").
XLA_POOL_THREAD = "tf_XLAEigen"


def current_numerics() -> TaskNumerics:
    """This process's: JAX's backend (started here if it was not), XLA's CPU threads
    (:func:`xla_cpu_threads`) and XLA_FLAGS."""
    import jax

    backend = jax.default_backend()
    return TaskNumerics(backend, xla_cpu_threads(), os.environ.get("XLA_FLAGS", ""))


def xla_cpu_threads() -> int:
    """The size of XLA's CPU thread pool in this process, whose CPU backend is started if it
    was not: its threads counted by name where Linux lists them, else the CPUs this process
    may run on now (XLA's size for it, unless the process was pinned after JAX started)."""
    import jax

    from gpllm.evaluate.runner.workers import available_cores

    jax.devices("cpu")
    return _thread_names().count(XLA_POOL_THREAD) or len(available_cores())


def _thread_names() -> list[str]:
    """The names of this process's threads ([] where /proc/self/task is not there)."""
    names = []
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return names
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return names


def local_numerics(workers: int) -> TaskNumerics:
    """What the tasks of a local run with ``workers`` processes run with: each worker's
    group of cores (:func:`~gpllm.evaluate.runner.workers.core_groups`), or, for 1, every CPU
    of this process."""
    from gpllm.evaluate.runner.workers import core_groups

    here = current_numerics()
    return here if workers == 1 else here._replace(threads=len(core_groups(workers)[0]))


def match_blas(threads: int) -> None:
    """Set OpenBLAS (NumPy's, and SciPy's, which jaxlib's LAPACK calls) to ``threads``
    threads, for the rest of this process: what a local worker gets from its environment
    before NumPy loads, applied in a process that is already running."""
    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS, so that the limit reaches it)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")

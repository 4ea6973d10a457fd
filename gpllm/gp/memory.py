"""Will a GP of this size fit in memory? Asked before anything is allocated.

An exact GP on N points and D outputs holds a handful of N x N matrices and a
few N x D ones at its peak. Counted for the value + gradient of Eq. 1 (the
fit's inner step; conditioning and prediction need less): A = K + s2 I and
the kernel's residuals, V = L^{-1} and U = V^T, the blocks of B B^T and
A^{-1} and dA (up to 7 N x N alive together), W = V F and B = U W (N x R,
R = D on the direct path, which per-output scales always take, min(N, D) on the gram
path), and Y itself:

    bytes ~ itemsize * B * (7 N^2 + 2 N R + N D + N Q)

for B datasets in flight at once (vmapped CV folds). Measured on CPU, float64,
gram path, D = 8,000, N = 10,000: 6.0 GiB added by the value + gradient and
its targets, plus Y's 0.6 GiB (estimate 7.0 GiB); ``python -m benchmarks.lml``
prints these peaks.

The limit is what the device has free: on GPU/TPU the allocator's
``bytes_limit`` less what is in use; on CPU the kernel's MemAvailable, or
less where a cgroup (a container, a Slurm job) caps the process or where its
address space is limited (``ulimit -v``, less what it already maps).
``GPLLM_MEMORY_CHECK=off`` skips the check (e.g. when swap is meant to absorb it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from gpllm.errors import MemoryLimitError

#: A JAX device (``jax.Device``): jaxlib ships no type stubs, so type checkers cannot use
#: ``jax.Device`` itself in an annotation.
Device = Any

ENV = "GPLLM_MEMORY_CHECK"
GIB = 1024**3


class Budget(NamedTuple):
    """Bytes free for a computation, and where that figure comes from."""

    free: int
    source: str


def gp_peak_bytes(n: int, d: int, q: int, dtype, datasets: int = 1, *, per_output: bool = False) -> int:
    """Estimated peak bytes of Eq. 1's value + gradient on Z (N, Q), Y (N, D) (module docstring);
    ``per_output`` scales take the direct path (R = D) whatever D is."""
    r = n if d > n and not per_output else d  # the gram path when D > N (objective.choose_path)
    return int(np.dtype(dtype).itemsize) * datasets * (7 * n * n + 2 * n * r + n * d + n * q)


#: The fit program's own buffers (XLA's ``memory_analysis``: temporaries, arguments and
#: outputs) per dataset in flight, in values: FIT_SQUARES N^2 + FIT_ROWS N D. Measured on CPU,
#: float32, for the L-BFGS fit with its three starts, the conditioning, the prediction and the
#: leave-one-out pass in one program (``gpllm.gp.api.fit_predict_batched``), N = 1,000-7,816,
#: D = 500-8,000, gram and direct paths, vmapped and looped: 17.2-25.4 N^2 in all, e.g. 3.91 GiB
#: of temporaries at N = 7,816, D = 8,000; about twice the value + gradient's
#: (:func:`gp_peak_bytes`), because the optimiser's state, the starts' loop and the
#: leave-one-out inverse are alive beside it.
FIT_SQUARES = 20
FIT_ROWS = 3
#: N x D arrays per fold that :meth:`gpllm.models.gp.GPModel.fit_predict_folds` stages around
#: the program: the stacked Y, its device copy, the centred copy, the leave-one-out residuals.
STAGED_ROWS = 4


def fold_fits_peak_bytes(n: int, d: int, q: int, dtype, n_folds: int, at_once: int, *, per_output: bool = False) -> int:
    """Estimated peak bytes of fitting, predicting and leaving one out on ``n_folds`` folds of
    Z (N, Q), Y (N, D), ``at_once`` of them in flight: the program's buffers per fold in flight
    (:data:`FIT_SQUARES`, :data:`FIT_ROWS`; R = D on the direct path, which per-output scales
    take, adds 2 N (D - N) where D > N), plus every fold's staged copies (:data:`STAGED_ROWS`
    N x D, two N x Q). Checked against the program's own memory analysis in the tests and
    against the measured peak by ``python -m benchmarks.gp_memory``."""
    direct_extra = 2 * n * max(d - n, 0) if per_output else 0
    program = FIT_SQUARES * n * n + FIT_ROWS * n * d + direct_extra
    staged = n_folds * n * (STAGED_ROWS * d + 2 * q)
    return int(np.dtype(dtype).itemsize) * (at_once * program + staged)


def device_budget(device: Device | None = None) -> Budget | None:
    """What ``device`` (default: the first) has free, or None when it cannot be told."""
    asked: Device = jax.devices()[0] if device is None else device
    if asked.platform != "cpu":
        stats = asked.memory_stats() or {}
        if "bytes_limit" not in stats:
            return None
        return Budget(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{asked.device_kind} memory")
    return host_budget()


def host_budget() -> Budget | None:
    """The host memory free (the kernel's MemAvailable, less where a cgroup caps it or the
    process's address space is limited), or None."""
    budgets = [b for b in (_mem_available(), _cgroup_headroom(), _address_space_headroom()) if b is not None]
    return min(budgets, key=lambda b: b.free) if budgets else None


def check_enabled() -> bool:
    """False where ``GPLLM_MEMORY_CHECK`` is off (``off``, ``0``, ``false`` or ``no``)."""
    return os.environ.get(ENV, "").strip().lower() not in ("off", "0", "false", "no")


def check_gp_fits(
    n: int, d: int, q: int, dtype, datasets: int = 1, *, what: str = "GP", per_output: bool = False
) -> None:
    """MemoryLimitError, naming the estimate and the limit, if the GP would not fit."""
    if not check_enabled():
        return
    need = gp_peak_bytes(n, d, q, dtype, datasets, per_output=per_output)
    budget = device_budget()
    if budget is None or need <= budget.free:
        return
    at_once = f", {datasets} datasets at once" if datasets > 1 else ""
    smaller = "" if np.dtype(dtype).itemsize <= 4 else "float32 (half the memory), "
    raise MemoryLimitError(
        f"{what} on N={n} points, D={d} outputs ({np.dtype(dtype).name}{at_once}) needs about "
        f"{need / GIB:.1f} GiB (7 N^2 + 2 N R + N D + N Q values), but only {budget.free / GIB:.1f} GiB "
        f"is free ({budget.source}); use {smaller}fewer points or datasets at once, or a larger machine "
        f"({ENV}=off skips this check)"
    )


def _mem_available() -> Budget | None:
    available = _proc_kib_field("/proc/meminfo", "MemAvailable")
    return None if available is None else Budget(available, "MemAvailable in /proc/meminfo")


def _proc_kib_field(path: str, field: str) -> int | None:
    """Bytes of the ``field: N kB`` line of a /proc file (meminfo, self/status), or None where unknown."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_headroom() -> Budget | None:
    """The soft RLIMIT_AS (``ulimit -v``) less this process's address space now (VmSize), or
    None where it is unlimited: allocations beyond it fail (XLA's RESOURCE_EXHAUSTED) however
    much memory is free."""
    try:
        import resource

        limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        return None
    if limit == resource.RLIM_INFINITY or limit < 0:
        return None
    used = _proc_kib_field("/proc/self/status", "VmSize") or 0  # this process's address space now
    return Budget(max(0, limit - used), "the address-space limit (ulimit -v)")


def _cgroup_headroom() -> Budget | None:
    """The limit less the usage of this process's memory cgroup (v2 or v1), or None if uncapped."""
    for limit_file, usage_file in _cgroup_files():
        try:
            limit, used = (limit_file.read_text().strip(), usage_file.read_text().strip())
        except OSError:
            continue
        if limit == "max" or int(limit) >= 1 << 60:  # v1 writes "no limit" as ~2^63
            return None
        return Budget(int(limit) - int(used), f"the cgroup limit in {limit_file}")
    return None


def _cgroup_files():
    """(limit, usage) file candidates: v2's memory.max, then v1's memory controller; the
    process's own cgroup folder first, the mount's root where that is not visible."""
    root = Path("/sys/fs/cgroup")
    try:
        lines = Path("/proc/self/cgroup").read_text().strip().splitlines()
    except OSError:
        lines = []
    paths = {}
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            paths["v2"] = path
        elif "memory" in controllers.split(","):
            paths["v1"] = path
    for version, base, limit, usage in (
        ("v2", root, "memory.max", "memory.current"),
        ("v1", root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes"),
    ):
        for folder in (base / paths.get(version, "/").lstrip("/"), base):
            if (folder / limit).is_file():
                yield folder / limit, folder / usage
                break

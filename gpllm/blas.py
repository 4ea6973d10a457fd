"""OpenBLAS's idle spinning, limited so that XLA gets the cores back.

On the CPU backend jaxlib runs the Cholesky (potrf) and the triangular solves
(trsm) of every likelihood evaluation through SciPy's OpenBLAS, and the GEMMs
and the kernel on XLA's own thread pool. After each call OpenBLAS keeps its
worker threads spinning for 2^28 cycles (about 0.1 s) by default, so on a
machine with few cores the GEMM that follows a solve shares its cores with
threads that have nothing to do. :func:`limit_openblas_spin` sets 2^20 cycles
(about 0.3 ms: short enough to free the cores before XLA's next operation,
long enough that back-to-back small solves, as in fits at N=200, do not pay a
thread wake-up each; 2^4, the smallest, made those slower). What it buys is
measured on the docs' Benchmarks page.

OpenBLAS reads ``OPENBLAS_THREAD_TIMEOUT`` once, when SciPy's LAPACK is first
loaded (by optax, scanpy or JAX's first CPU factorisation), so
:func:`limit_openblas_spin` must run before that; a value already in the
environment wins. ``import gpllm`` sets nothing: library users call it first
thing, or set the variable in the shell (``export OPENBLAS_THREAD_TIMEOUT=20``).
The ``gpllm`` command always gets it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

SPIN_VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
#: log2 of the cycles an idle OpenBLAS thread spins before it sleeps (OpenBLAS: 4-30, default 28).
SPIN_EXPONENT = "20"


def limit_openblas_spin(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` to :data:`SPIN_EXPONENT` unless it is set already.

    Args:
        environ: the mapping to set it in (default: ``os.environ``, this process's).

    Returns:
        Whether the value can still take effect in this process (False once SciPy's
        LAPACK is loaded: OpenBLAS has read its environment by then).
    """
    environ = os.environ if environ is None else environ
    environ.setdefault(SPIN_VARIABLE, SPIN_EXPONENT)
    return "scipy.linalg" not in sys.modules

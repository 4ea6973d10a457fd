"""gpllm's OpenBLAS spin limit: set by one explicit call unless the user chose, and read by OpenBLAS."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest
import scipy

from gpllm.blas import SPIN_EXPONENT, SPIN_VARIABLE, limit_openblas_spin

SCIPY_OPENBLAS = sorted(
    glob.glob(os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs", "libscipy_openblas*.so"))
)

# What OpenBLAS itself read from the environment when SciPy's LAPACK loaded it.
_READ_BACK = f"""
import ctypes, sys
import gpllm.blas
if sys.argv[1:] == ["limit"]:
    gpllm.blas.limit_openblas_spin()
import scipy.linalg
print(ctypes.CDLL({SCIPY_OPENBLAS[0] if SCIPY_OPENBLAS else ""!r}).openblas_thread_timeout())
"""


def test_sets_the_default_and_keeps_a_users_value():
    environ: dict[str, str] = {}
    limit_openblas_spin(environ)
    assert environ == {SPIN_VARIABLE: SPIN_EXPONENT}
    environ = {SPIN_VARIABLE: "8"}
    limit_openblas_spin(environ)
    assert environ == {SPIN_VARIABLE: "8"}


def test_reports_when_openblas_has_already_read_its_environment():
    import scipy.linalg  # noqa: F401  (loads OpenBLAS in this process)

    assert limit_openblas_spin({}) is False


def _openblas_timeout_in_child(environ: dict[str, str], *args: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _READ_BACK, *args], env=environ, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not SCIPY_OPENBLAS, reason="SciPy is not linked to its bundled OpenBLAS here")
def test_openblas_reads_the_value_set_by_limit_openblas_spin():
    environ = {k: v for k, v in os.environ.items() if k != SPIN_VARIABLE}
    assert _openblas_timeout_in_child(environ, "limit") == int(SPIN_EXPONENT)
    assert _openblas_timeout_in_child({**environ, SPIN_VARIABLE: "12"}, "limit") == 12
    # Importing gpllm alone leaves OpenBLAS at its own default (2^28 cycles; 0 = "unset").
    assert _openblas_timeout_in_child(environ) != int(SPIN_EXPONENT)

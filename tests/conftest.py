"""Shared test fixtures: dtype-aware tolerances, the ../shared data folder, and one JAX
compilation cache for the whole session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import gpllm
from gpllm import compilation_cache

# Tests compute in float64 unless they ask otherwise, as a user who calls use_float64() does.
gpllm.use_float64()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_SESSION_CACHE = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Point JAX's persistent compilation cache at one folder made for this session, unless
    ``$GPLLM_JAX_CACHE`` already names one (or ``off``). The variable is set before pytest-xdist
    starts its workers, so they, and every process a test starts (sweep workers, ``python -m
    gpllm.cli``, tutorials), compile a program once per session instead of once per process;
    and no test writes to the user's own cache. JAX decides at its first compile whether a
    process uses the cache, so this runs before any test module is imported."""
    if compilation_cache.ENV not in os.environ:
        folder = tempfile.mkdtemp(prefix="gpllm-tests-jax-")
        os.environ[compilation_cache.ENV] = folder
        config.stash[_SESSION_CACHE] = folder
    compilation_cache.enable()
    _cache_every_program()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _cache_every_program()  # a command run in-process (CliRunner) sets the threshold back to its 1 s


def _cache_every_program() -> None:
    """Keep every compiled program, not only those over the command's 1 s threshold: the
    session compiles many small programs (metrics, predictions) in several processes."""
    import jax

    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_SESSION_CACHE, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        del os.environ[compilation_cache.ENV]


def rtol_for(dtype) -> float:
    """Relative tolerance for a result computed in ``dtype``: a fixed multiple of
    sqrt(eps) covers the O(N) rounding growth of a Cholesky at test sizes."""
    return float(np.sqrt(np.finfo(dtype).eps)) * (10.0 if np.dtype(dtype) == np.float32 else 1.0)


@pytest.fixture
def shared_data() -> Path:
    """The real data folder beside the repository; skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA

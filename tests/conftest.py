"""Shared test fixtures: dtype-aware tolerances, the ../shared data folder, and one JAX
compilation cache for the whole session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
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
    _compile_for_a_short_run()
    if compilation_cache.ENV not in os.environ:
        folder = tempfile.mkdtemp(prefix="gpllm-tests-jax-")
        os.environ[compilation_cache.ENV] = folder
        config.stash[_SESSION_CACHE] = folder
    compilation_cache.enable()
    _cache_every_program()


def _compile_for_a_short_run() -> None:
    """Ask XLA not to optimise the machine code it makes (LLVM at -O0), unless ``$XLA_FLAGS``
    already chooses a level. The session compiles hundreds of programs and runs each on small
    inputs for milliseconds, so LLVM's passes cost more than they save: a GP fit's compile takes
    a third less CPU time (4.6 s against 3.1 s), the combos end-to-end test a fifth less. The HLO
    programs, their order of operations and so the tests' checks are the same; a result may
    differ from an -O2 build in its last bits only where LLVM would have fused a multiply-add.
    Set here, before pytest-xdist starts its workers, so they and every process a test starts
    (sweep workers, Dask workers, tutorials) compile alike."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _cache_every_program()  # a command run in-process (CliRunner) sets the threshold back to its 1 s


def _cache_every_program() -> None:
    """Keep every compiled program, not only those over the command's 1 s threshold: the
    session compiles many small programs (metrics, predictions) in several processes."""
    import jax

    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


#: The modules that keep one worker busiest (seconds in the last quiet CI's ``--durations``, each
#: over about 30 s), longest first. They start first: pytest-xdist hands a worker a whole module
#: (``--dist loadscope``), and one of them picked up last would leave the other core idle for its
#: whole length; the short modules that follow even out the two workers' ends.
LONG_MODULES = (
    "tests/evaluate/test_run_folder.py",
    "tests/evaluate/test_reproduce.py",
    "tests/models/test_protocol.py",
    "tests/gp/test_fit.py",
    "tests/pairs/test_combos.py",
    "tests/test_extension.py",
    "tests/docs/test_tutorials.py",
    "tests/active/test_workers.py",
    "tests/models/test_gp_model.py",
    "tests/gp/test_output_scales.py",
    "tests/robustness/test_start_outside_constraint.py",
    "tests/evaluate/test_sweep.py",
    "tests/evaluate/test_dask_executor.py",
    "tests/docs/test_snippets.py",
    "tests/active/test_simulate.py",
    "tests/gp/test_sharding.py",
    "tests/cli/test_fit_predict.py",
    "tests/gp/test_objective.py",
    "tests/models/test_gp_select.py",
    "tests/gp/test_blocked.py",
)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture scope
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest-first order for the workers' queue (pyproject's ``--no-loadscope-reorder`` keeps
    it): the LONG_MODULES in their order, then the other modules with the most tests first, as
    pytest-xdist would order them itself. A module's tests keep their order and stay together."""
    module_of = {item: item.nodeid.split("::", 1)[0] for item in items}
    tests_in = Counter(module_of.values())
    rank = {module: place for place, module in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: (rank.get(module_of[item], len(rank)), -tests_in[module_of[item]], module_of[item]))


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

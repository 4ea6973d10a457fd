"""`import gpllm` changes nothing global; the documented calls and the `gpllm` command do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

_PROBE = """
import json, os, sys, warnings
# Dependencies' own import-time settings (JAX's log level, polars' allocator variable)
# are theirs: they happen before the snapshot, as they would in a user's session.
import jax, polars, optax, scipy.linalg
before = (bool(jax.config.jax_enable_x64), dict(os.environ))
import gpllm, gpllm.gp, gpllm.models.registry, gpllm.evaluate.runner.sweep, gpllm.reproduce, gpllm.cli
after = (bool(jax.config.jax_enable_x64), dict(os.environ))
changed = sorted(k for k in set(before[1]) | set(after[1]) if before[1].get(k) != after[1].get(k))
print(json.dumps({"x64_before": before[0], "x64_after": after[0], "environ_changed": changed}))
"""


def _probe(environ=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "OPENBLAS_THREAD_TIMEOUT")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**env, **(environ or {})}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_gpllm_leaves_jax_flags_and_environment_alone():
    got = _probe()
    assert got == {"x64_before": False, "x64_after": False, "environ_changed": []}


def test_use_float64_is_the_one_switch():
    code = (
        "import jax, gpllm; gpllm.use_float64(); import jax.numpy as jnp; "
        "print(jnp.ones(1).dtype, gpllm.float64_enabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["float64", "True"]


def test_float64_data_without_float64_warns_once():
    code = """
import warnings, numpy as np
from gpllm import gp
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    Z, Y = np.random.default_rng(0).normal(size=(2, 10, 2))
    gp.log_marginal_likelihood(gp.RBF(), gp.init_params(gp.RBF(), Z, Y), Z, Y)
    gp.log_marginal_likelihood(gp.RBF(), gp.init_params(gp.RBF(), Z, Y), Z, Y)
print(sum("use_float64" in str(w.message) for w in seen))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1"


def _command_state(*args: str) -> list[str]:
    """Run the `gpllm` entry point in a fresh process; report float64, the OpenBLAS limit
    and whether JAX was loaded at all."""
    code = (
        "import sys, os; from gpllm import cli; sys.argv=['gpllm', *sys.argv[1:]]\ntry:\n    cli.main()\n"
        "except SystemExit:\n    pass\nloaded = 'jax' in sys.modules\nimport jax\n"
        "print(jax.config.jax_enable_x64, os.environ.get('OPENBLAS_THREAD_TIMEOUT'), loaded)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**env, "GPLLM_JAX_CACHE": "off"},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1].split()


def test_the_command_computes_in_float64_with_the_openblas_limit(tmp_path):
    missing = str(tmp_path / "missing.h5ad")  # fails after the set-up, before any work
    assert _command_state("evaluate", missing, "--truth", missing) == ["True", "20", "True"]


def test_help_and_argument_errors_do_not_load_jax(tmp_path):
    assert _command_state("--help") == ["False", "20", "False"]
    assert _command_state("reproduce", "--sizes", "100,abc") == ["False", "20", "False"]
    assert _command_state("reproduce", "--config", str(tmp_path / "none.toml")) == ["False", "20", "False"]

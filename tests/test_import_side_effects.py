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
import gpllm, gpllm.gp, gpllm.models.registry, gpllm.evaluate.sweep, gpllm.reproduce, gpllm.cli
after = (bool(jax.config.jax_enable_x64), dict(os.environ))
changed = sorted(k for k in set(before[1]) | set(after[1]) if before[1].get(k) != after[1].get(k))
print(json.dumps({"x64_before": before[0], "x64_after": after[0], "environ_changed": changed}))
"""


def _probe(environ=None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "OPENBLAS_THREAD_TIMEOUT")}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**env, **(environ or {})},
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_gpllm_leaves_jax_flags_and_environment_alone():
    got = _probe()
    assert got == {"x64_before": False, "x64_after": False, "environ_changed": []}


def test_use_float64_is_the_one_switch():
    code = "import jax, gpllm; gpllm.use_float64(); import jax.numpy as jnp; print(jnp.ones(1).dtype, gpllm.float64_enabled())"
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


def test_the_command_runs_in_float64_with_the_openblas_limit():
    code = "import sys, jax, os; from gpllm import cli; sys.argv=['gpllm','--help']\ntry:\n    cli.main()\nexcept SystemExit:\n    pass\nprint(jax.config.jax_enable_x64, os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], env={**env, "GPLLM_JAX_CACHE": "off"},
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "True 20"

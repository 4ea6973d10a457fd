"""A mistake in a user's kernel or factory is a gpllm error naming the user's object and what
gpllm expected, through the Python API and through ``gpllm reproduce`` with a plug-in file;
never a JAX broadcasting traceback or a bare TypeError."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gpllm import gp
from gpllm.cli import app
from gpllm.errors import InputError, ShapeError
from gpllm.models.registry import BuildContext, ModelSpec
from gpllm.plugins import load_reference
from tests._helpers import synthetic_config_toml

#: A user's file: kernels whose gram or diag return the wrong shape, and a factory written
#: with three arguments (as the README once described it) instead of the one BuildContext.
PLUGIN = """
import dataclasses
import jax.numpy as jnp
from gpllm import gp

@dataclasses.dataclass(frozen=True)
class FirstColumns(gp.Kernel):
    '''gram returns the inputs' first three columns: (N, 3), not (N, N).'''
    def init(self, Z, scale=1.0):
        return {"variance": jnp.asarray(scale, Z.dtype)}
    def gram(self, params, X1, X2=None):
        return params["variance"] * X1[:, :3]

@dataclasses.dataclass(frozen=True)
class IgnoresX2(gp.Kernel):
    '''Right on K(X, X), wrong on a cross-covariance: it never looks at X2.'''
    def init(self, Z, scale=1.0):
        return {"variance": jnp.asarray(scale, Z.dtype)}
    def gram(self, params, X1, X2=None):
        return params["variance"] * jnp.exp(-0.5 * jnp.sum((X1[:, None] - X1[None]) ** 2, axis=-1))

@dataclasses.dataclass(frozen=True)
class ColumnDiag(gp.RBF):
    '''An RBF whose diag is a column (N, 1), not (N,).'''
    def diag(self, params, X):
        return jnp.full((X.shape[0], 1), params["variance"])

def three_argument_factory(blocks, ctrl, seed):
    return gp.RBF()
"""

CONFIG = synthetic_config_toml(
    {"n_perts": 60, "n_genes": 20},
    top={"name": "plugin", "embeddings": ["text"], "pca_k": 4},
    sweep={"models": ["nonctrl_mean"], "sizes": [20], "n_folds": 2},
)


@pytest.fixture
def plugin(tmp_path) -> Path:
    path = tmp_path / "my_kernels.py"
    path.write_text(textwrap.dedent(PLUGIN))
    return path


def _user(plugin: Path, attr: str):
    return load_reference(f"{plugin}:{attr}", "test")


def _problem(n=30, m=7, q=5, d=4):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, q)), rng.normal(size=(n, d)), rng.normal(size=(m, q))


def test_a_gram_of_the_wrong_shape_is_named_through_the_api(plugin):
    Z, Y, _ = _problem()
    kernel = _user(plugin, "FirstColumns")()
    want = (
        rf"kernel FirstColumns \(from {re.escape(str(plugin))}\): gram returned shape \(30, 3\) .*expected \(30, 30\)"
    )
    with pytest.raises(ShapeError, match=want):
        gp.fit(kernel, Z, Y)
    with pytest.raises(ShapeError, match=want):  # inside a sum: the term is named, not the Sum
        gp.fit(kernel + gp.White(), Z, Y)


def test_a_wrong_cross_covariance_is_named_at_prediction(plugin):
    Z, Y, Z_new = _problem()
    kernel = _user(plugin, "IgnoresX2")()
    post = gp.condition(kernel, gp.init_params(kernel, Z, Y), Z, Y)  # K(Z, Z) is right
    with pytest.raises(
        ShapeError, match=r"IgnoresX2 .*gram returned shape \(30, 30\) .*X2 \(7, 5\).*expected \(30, 7\)"
    ):
        gp.predict(kernel, post, Z_new)


def test_a_diag_of_the_wrong_shape_is_named(plugin):
    Z, Y, Z_new = _problem()
    kernel = _user(plugin, "ColumnDiag")()
    post = gp.condition(kernel, gp.init_params(kernel, Z, Y), Z, Y)
    with pytest.raises(ShapeError, match=r"ColumnDiag .*diag returned shape \(7, 1\) .*expected \(7,\)"):
        gp.predict(kernel, post, Z_new)


def test_built_in_kernels_pass_the_check_on_cross_covariances():
    Z, _, Z_new = _problem()
    for kernel in (gp.RBF(), gp.Linear() * gp.Matern32(), gp.Active(gp.RBF(), 0, 2) + gp.White()):
        values = kernel.init(Z)
        assert kernel.gram(values, Z, Z_new).shape == (30, 7)
        assert kernel.diag(values, Z_new).shape == (7,)


def test_a_three_argument_factory_is_named_with_the_call_gpllm_makes(plugin):
    spec = ModelSpec("mine", kernel=f"{plugin}:three_argument_factory")
    want = (
        rf"factory three_argument_factory\(blocks, ctrl, seed\) in {re.escape(str(plugin))} .*"
        r"one argument, a gpllm.models.registry.BuildContext"
    )
    with pytest.raises(InputError, match=want):
        spec.check()  # up front, before any data is read
    with pytest.raises(InputError, match=want):
        spec.build(BuildContext())


def _reproduce(tmp_path: Path, model: str):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    out = tmp_path / "run"
    args = ["reproduce", "--config", str(config), "--out", str(out), "--no-progress", "--workers", "1"]
    return CliRunner().invoke(app, [*args, "--models", f"nonctrl_mean,{model}"]), out


def test_gpllm_reproduce_names_a_plugin_kernel_whose_gram_has_the_wrong_shape(plugin, tmp_path):
    result, _ = _reproduce(tmp_path, f"{plugin}:FirstColumns")
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()  # one line, no traceback
    assert "kernel FirstColumns" in line and str(plugin) in line
    assert re.search(r"gram returned shape \(20, 3\) .*expected \(20, 20\)", line), line


def test_gpllm_reproduce_names_a_three_argument_factory_before_any_fit(plugin, tmp_path):
    result, out = _reproduce(tmp_path, f"{plugin}:three_argument_factory")
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert "three_argument_factory(blocks, ctrl, seed)" in line and "BuildContext" in line, line
    assert not (out / "parts").exists()  # nothing was fitted

"""A researcher's own kernel, constraints, optimiser and model, from their own file, without editing gpllm."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import polars as pl
import pytest
from jax.test_util import check_grads
from typer.testing import CliRunner

from gpllm import gp
from gpllm.cli import app
from gpllm.errors import InputError
from gpllm.models.registry import ModelSpec, spec_from
from gpllm.plugins import load_reference
from gpllm.reproduce import ReproduceConfig, reproduce
from tests._helpers import synthetic_config_toml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments" / "projected_kernel.py"
SMALL = {"kind": "synthetic", "seed": 0, "overrides": {"n_perts": 70, "n_genes": 30}}


def _problem(n=40, q=6, d=5, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, q))
    Y = np.sin(Z[:, :2] @ rng.normal(size=(2, d))) + 0.1 * rng.normal(size=(n, d))
    return jnp.asarray(Z), jnp.asarray(Y - Y.mean(0))


def test_the_example_kernel_has_a_real_valued_parameter_whose_gradient_matches_finite_differences():
    kernel = load_reference(f"{EXAMPLE}:ProjectedRBF", "test")(rank=3)
    Z, Y = _problem()
    params = gp.init_params(kernel, Z, Y)
    assert gp.constraints_of(kernel).kernel["projection"] is gp.real
    # Real-valued: the raw leaf is the value itself, negative entries included.
    np.testing.assert_array_equal(params.kernel["projection"], gp.values_of(kernel, params).kernel["projection"])
    assert np.any(np.asarray(params.kernel["projection"]) < 0)
    targets = gp.prepare_targets(Y)

    def lml(p):
        return gp.objective.lml(kernel, p, Z, targets).value

    check_grads(lml, (params,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_the_example_kernel_fits_with_the_users_optax_chain():
    module_kernel = load_reference(f"{EXAMPLE}:ProjectedRBF", "test")(rank=3)
    chain = load_reference(f"{EXAMPLE}:OPTIMIZER", "test")
    Z, Y = _problem()
    start = gp.log_marginal_likelihood(module_kernel, gp.init_params(module_kernel, Z, Y), Z, Y).value
    result = gp.fit(module_kernel, Z, Y, options=gp.FitOptions(optimizer=chain, max_steps=150))
    assert int(result.n_steps) > 10 and float(result.lml) > float(start) + 1.0
    np.testing.assert_allclose(result.lml_trace()[-1] * Z.shape[0] * Y.shape[1], result.lml, rtol=1e-10)


def test_a_fixed_parameter_never_moves_even_under_weight_decay_and_a_bounded_one_stays_inside():
    def kernel_fn(p, x, y):
        return p["variance"] * jnp.exp(-0.5 * jnp.sum((x - y) ** 2) / p["lengthscale"] ** 2) + p["offset"]

    kernel = gp.FunctionKernel(
        kernel_fn,
        {"variance": 1.0, "lengthscale": 2.0, "offset": 0.05},
        declared={"lengthscale": gp.fixed, "offset": gp.Bounded(0.0, 0.1)},
    )
    Z, Y = _problem(n=25)
    decay = optax.adamw(0.05, weight_decay=0.5)
    result = gp.fit(kernel, Z, Y, options=gp.FitOptions(optimizer=decay, max_steps=60))
    values = gp.params_to_values(kernel, result.params)["kernel"]
    assert float(values["lengthscale"]) == 2.0
    assert 0.0 < float(values["offset"]) < 0.1
    assert int(result.n_steps) > 1


def test_a_value_that_violates_its_declared_constraint_is_named_with_the_constraint():
    kernel = gp.FunctionKernel(
        lambda p, x, y: p["a"] * jnp.dot(x, y), {"a": 1.0, "b": 0.0}, declared={"b": gp.Bounded(-1.0, 1.0)}
    )
    with pytest.raises(InputError, match=r"kernel\['b'\].*must lie in \(-1, 1\).*Bounded"):
        gp.params_from_values(kernel, {"a": 1.0, "b": 3.0}, 0.1)
    with pytest.raises(InputError, match=r"kernel\['a'\].*must be positive"):
        gp.params_from_values(kernel, {"a": -1.0, "b": 0.0}, 0.1)
    with pytest.raises(InputError, match="do not match the kernel's declared constraints"):
        gp.params_from_values(gp.RBF(), {"variance": 1.0}, 0.1)


def test_bounded_and_positive_round_trip():
    for constraint, value in ((gp.positive, 3e-4), (gp.Bounded(-2.0, 5.0), 4.5), (gp.real, -7.0), (gp.fixed, 1.5)):
        raw = constraint.inverse(jnp.asarray(value, jnp.float64))
        np.testing.assert_allclose(constraint.forward(raw), value, rtol=1e-12)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"optimizer": object()}, "optimizer must be one of"),
        ({"max_steps": -1}, "max_steps must be an integer >= 1"),
        ({"gtol": float("nan")}, "gtol must be a finite number"),
        ({"path": "qr"}, "path must be one of"),
    ],
)
def test_bad_fit_options_are_named(options, message):
    with pytest.raises(InputError, match=message):
        gp.FitOptions(**options)


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"kernel": "no_such_module_xyz:K"}, r"\[models.mine\] kernel.*cannot import module 'no_such_module_xyz'"),
        ({"kernel": "plugin.py:Missing"}, r"\[models.mine\] kernel.*has no attribute 'Missing'"),
        ({"model": "plugin.py:HalfModel"}, r"missing method\(s\) predict"),
        ({"kernel": "plugin.py:HalfModel"}, "not a gpllm.gp.Kernel"),
        ({"kernel": "plugin.py:Broken"}, "importing .*plugin.py failed: ZeroDivisionError"),
        ({"kernel": "plugin.py:K", "optimizer": "plugin.py:NOT_AN_OPTIMIZER"}, "optimizer must be one of"),
        (
            {"kernel": "plugin.py:K", "max_step": 3},
            r"\[models.mine\]: unknown key 'max_step' \(did you mean 'max_steps'\?\)",
        ),
    ],
)
def test_bad_plugins_fail_before_any_fit_naming_the_config_key(tmp_path, entry, message):
    _write(
        tmp_path,
        "plugin.py",
        """
        import gpllm.gp as gp
        class HalfModel:
            def fit(self, Z, Y):
                return None
        K = gp.RBF()
        NOT_AN_OPTIMIZER = 3
        if __import__("os").environ.get("NEVER"):
            pass
    """,
    )
    if "Broken" in entry.get("kernel", ""):
        _write(tmp_path, "plugin.py", "x = 1 / 0\n")
    raw = {"data": SMALL, "sweep": {"models": ["mine"], "sizes": [20], "n_folds": 2}, "models": {"mine": entry}}
    with pytest.raises(InputError, match=message):
        config = ReproduceConfig.from_dict(raw, base=tmp_path)
        reproduce(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "parts").exists()  # nothing was fitted


@pytest.mark.slow
def test_a_users_own_model_joins_the_sweep_as_module_attr(tmp_path):
    _write(
        tmp_path,
        "shrunk_mean.py",
        """
        from typing import NamedTuple
        import numpy as np
        from gpllm.models.base import Prediction

        class State(NamedTuple):
            mean: np.ndarray

        class ShrunkMean:
            \"\"\"Predicts half the training mean: a deliberately poor model of one's own.\"\"\"
            def fit(self, Z, Y):
                return State(0.5 * np.asarray(Y).mean(axis=0))
            def predict(self, state, Z_test):
                return Prediction(np.tile(state.mean, (len(Z_test), 1)), None)
            def record(self, state):
                return {"scale": 0.5}
    """,
    )
    raw = {
        "data": SMALL,
        "embeddings": ["text"],
        "pca_k": 5,
        "sweep": {"models": ["nonctrl_mean", "shrunk_mean.py:ShrunkMean"], "sizes": [20], "n_folds": 2},
    }
    run = reproduce(ReproduceConfig.from_dict(raw, base=tmp_path), tmp_path / "run", progress=False)
    mine = run.results.filter(model="ShrunkMean")
    assert mine.height > 0 and set(mine["embedding"]) == {"text"}
    assert json.loads(mine["hyperparameters"][0]) == {"scale": 0.5}


@pytest.mark.slow
def test_the_projected_kernel_example_runs_through_gpllm_reproduce(tmp_path):
    """The shipped example config, shrunk to a small screen, through the command line."""
    config = (ROOT / "experiments" / "projected_kernel.toml").read_text()
    config = config.replace(
        '[data]\nkind = "synthetic"\nseed = 0',
        '[data]\nkind = "synthetic"\nseed = 0\n[data.overrides]\nn_perts = 80\nn_genes = 30',
    )
    # one size: every assertion below reads one fit's record, and a second size only compiled and fitted
    # both GPs again at another shape
    config = config.replace("sizes = [100, 400, 1000]", "sizes = [20]").replace("n_folds = 5", "n_folds = 2")
    config = config.replace("max_steps = 300", "max_steps = 30")
    config = config.replace('"projected_kernel.py:', f'"{EXAMPLE}:')
    path = _write(tmp_path, "projected.toml", config)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["reproduce", "--config", str(path), "--out", str(out), "--no-progress", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    results = pl.read_parquet(out / "results.parquet")
    projected = results.filter(model="gp_projected")
    assert set(projected["embedding"]) == {"text@raw", "sequence@raw"}
    assert set(results.filter(model="gp")["embedding"]) == {"text", "sequence"}
    record = json.loads(projected.filter(pl.col("hyperparameters") != "")["hyperparameters"][0])
    assert np.asarray(record["kernel"]["projection"]).shape[1] == 16 and record["n_steps"] == 30
    assert "gp_projected" in result.output or "projected" in result.output


@pytest.mark.slow
def test_the_cli_takes_a_kernel_reference_in_models(tmp_path):
    _write(
        tmp_path,
        "kern.py",
        """
        from gpllm import gp
        def Matern(context):
            \"\"\"A factory: one Matern-5/2 per embedding block, from the build context.\"\"\"
            blocks = [gp.Active(gp.Matern52(), start, stop) for _, start, stop in context.blocks]
            return sum(blocks[1:], blocks[0])
    """,
    )
    config = _write(
        tmp_path,
        "c.toml",
        synthetic_config_toml(
            {"n_perts": 60, "n_genes": 20},
            top={"name": "k", "embeddings": ["text+sequence"], "pca_k": 4},
            sweep={"models": ["nonctrl_mean"], "sizes": [20], "n_folds": 2},
        ),
    )
    out = tmp_path / "run"
    args = [
        "reproduce",
        "--config",
        str(config),
        "--out",
        str(out),
        "--no-progress",
        "--workers",
        "1",
        "--models",
        f"nonctrl_mean,{tmp_path / 'kern.py'}:Matern",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(pl.read_parquet(out / "results.parquet").filter(model="Matern")["hyperparameters"][0])
    assert len(record["kernel"]) == 2  # one parameter set per block


def test_spec_round_trips_through_json():
    spec = spec_from({"name": "g", "kernel": "m.py:K", "max_steps": 7, "embeddings": ["text"]})
    assert spec_from(spec.to_json()) == spec
    assert ModelSpec("gp").to_json() == {"name": "gp"}

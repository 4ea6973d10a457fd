"""Sharding over 4 (host) devices gives the one-device numbers.

Outputs: Y's columns split over the devices, same LML and gradient. Datasets:
CV folds split over the devices (``mesh=`` of fit_batched / fit_predict_batched,
and the GP model's folds), same fitted hyperparameters, LML, predictions and
variances, for B that does and does not divide the device count. The devices
exist only in a child process (``XLA_FLAGS`` must be set before JAX starts),
which computes everything once and prints it as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from gpllm import gp
from gpllm.errors import InputError
from gpllm.gp.sharding import output_mesh

SCRIPT = textwrap.dedent(
    """
    import json, jax, jax.numpy as jnp, numpy as np
    import gpllm
    from gpllm import gp
    from gpllm.errors import InputError
    from gpllm.gp.objective import prepare_targets
    from gpllm.gp.sharding import dataset_mesh, output_mesh, shard_columns, shard_datasets, shard_targets
    from gpllm.models.base import Fold
    from gpllm.models.gp import GPModel
    gpllm.use_float64()
    assert jax.device_count() == 4, jax.devices()
    as_list = lambda tree: [np.asarray(x, np.float64).tolist() for x in jax.tree.leaves(tree)]
    out = {}

    rng = np.random.default_rng(0)
    Z, Y = jnp.asarray(rng.normal(size=(32, 3))), jnp.asarray(rng.normal(size=(32, 48)))
    params = gp.params_from_values(gp.RBF(), {"variance": 1.3, "lengthscale": 0.9}, 0.2)
    for path in ("direct", "gram"):
        targets = prepare_targets(Y, path)
        sharded = shard_targets(targets, output_mesh())
        assert len(sharded.factor.sharding.device_set) == 4
        v, g = gp.value_and_grad(gp.RBF(), params, Z, targets)
        vs, gs = gp.value_and_grad(gp.RBF(), params, Z, sharded)
        out["outputs_" + path] = [float(v), float(vs), as_list(g), as_list(gs)]
    try:
        shard_columns(jnp.zeros((3, 5)), output_mesh())
        out["uneven_columns_refused"] = False
    except InputError:
        out["uneven_columns_refused"] = True

    # Five folds: four devices hold two each, the last three slots copies of fold 5.
    B, N, Q, D, M = 5, 24, 3, 6, 4
    Zb = rng.normal(size=(B, N, Q))
    Yb = np.sin(Zb @ rng.normal(size=(Q, D))) + 0.1 * rng.normal(size=(B, N, D))
    Zn = rng.normal(size=(B, M, Q))
    placed = shard_datasets(jnp.asarray(Zb), dataset_mesh())
    out["placed"] = [len(placed.sharding.device_set), [s.data.shape[0] for s in placed.addressable_shards]]
    mesh = dataset_mesh()
    # Adam compiles several times faster than L-BFGS; the GP model below reuses these programs.
    fit = dict(options=gp.FitOptions(optimizer="adam", max_steps=40), include_noise=True)
    for dtype in ("float64", "float32"):
        z, y, zn = (jnp.asarray(a, dtype) for a in (Zb, Yb, Zn))
        one = gp.fit_predict_batched(gp.RBF(), z, y, zn, **fit)
        four = gp.fit_predict_batched(gp.RBF(), z, y, zn, **fit, mesh=mesh)
        out["fit_predict_" + dtype] = [as_list(one), as_list(four)]
        if dtype == "float64":
            # Four folds, one a device: the results stay spread, one fold on each device.
            even = gp.fit_predict_batched(gp.RBF(), z[:4], y[:4], zn[:4], **fit, mesh=mesh)
            out["even"] = [as_list(one), as_list(even)]
            out["even_spread"] = [len(even[0].lml.sharding.device_set), len(even[1].sharding.device_set),
                                  [s.data.shape[0] for s in even[0].lml.addressable_shards]]
            fitted = gp.fit_batched(gp.RBF(), z, y, options=fit["options"], mesh=mesh)
            out["fit"] = [as_list(one[0]), as_list(fitted)]

    # The memory guard counts each device's group; host devices share one memory.
    from gpllm.errors import MemoryLimitError
    from gpllm.gp import memory
    budget = memory.device_budget
    memory.device_budget = lambda device=None: memory.Budget(2 * memory.gp_peak_bytes(N, D, Q, "float64"), "a test's")
    out["in_flight"] = []
    for batch_size in (None, 8):
        try:
            gp.fit_batched(gp.RBF(), jnp.asarray(Zb), jnp.asarray(Yb), batch_size=batch_size, mesh=mesh)
        except MemoryLimitError as err:
            out["in_flight"].append(str(err))
    memory.device_budget = budget

    folds = [Fold(Zb[b], Yb[b], Zn[b, : 2 + b % 3]) for b in range(B)]
    for name, model in (("one", GPModel(options=fit["options"], spread_folds=False)),
                        ("four", GPModel(options=fit["options"]))):
        fits = model.fit_predict_folds(folds)
        out["model_" + name] = [[f.prediction.mean.tolist(), f.prediction.var.tolist(), f.record["lml"]] for f in fits]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices() -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _close(a, b, dtype: str, what: str):
    """Equal to sqrt(eps): each device runs the one-device program on its folds, so only the
    order of roundings may differ (measured ~1e-15 in float64, ~5e-7 in float32), and the
    fit's steps may amplify that; a wrong fold, padding or reduction is off by far more."""
    tol = float(np.sqrt(np.finfo(dtype).eps))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=tol, atol=tol, err_msg=what)


@pytest.mark.slow
def test_sharded_outputs_match_unsharded(four_devices):
    assert four_devices["uneven_columns_refused"], "5 columns over 4 devices must be refused"
    for path in ("direct", "gram"):
        v, vs, g, gs = four_devices["outputs_" + path]
        np.testing.assert_allclose(vs, v, rtol=1e-12, err_msg=path)
        np.testing.assert_allclose(gs, g, rtol=1e-10, err_msg=path)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_folds_spread_over_devices_match_one_device(four_devices, dtype):
    """Fitted params, LML, steps, mean and variance of 5 folds on 4 devices (padded to 8)."""
    one, four = four_devices["fit_predict_" + dtype]
    _close(one, four, dtype, f"fit_predict_batched {dtype}")
    assert np.shape(four[-1]) == (5, 4), "the padding's results must be dropped"


@pytest.mark.slow
def test_fit_batched_spread_matches_one_device(four_devices):
    one, four = four_devices["fit"]
    _close(one, four, "float64", "fit_batched")


@pytest.mark.slow
def test_folds_really_spread_over_four_devices(four_devices):
    assert four_devices["placed"] == [4, [2, 2, 2, 2]], "5 datasets padded to 8: two a device"
    assert four_devices["even_spread"] == [4, 4, [1, 1, 1, 1]]
    one, even = four_devices["even"]
    _close([np.asarray(x)[:4] for x in one], even, "float64", "four folds on four devices")


@pytest.mark.slow
def test_memory_guard_counts_each_devices_group(four_devices):
    """Budget for two folds: four host devices holding one fold each (the CPU default) share
    the machine's memory, so 4 are in flight; batch_size 8 is capped at a device's 2."""
    refused = four_devices["in_flight"]
    assert len(refused) == 2 and "4 datasets at once" in refused[0] and "8 datasets at once" in refused[1], refused


@pytest.mark.slow
def test_gp_model_spreads_folds_to_the_same_numbers(four_devices):
    one, four = four_devices["model_one"], four_devices["model_four"]
    for (m1, v1, l1), (m4, v4, l4) in zip(one, four, strict=True):
        _close([m1, v1, l1], [m4, v4, l4], "float64", "GPModel.fit_predict_folds")


@pytest.mark.parametrize("mesh", ["gpu", "output mesh"])
def test_a_mesh_without_a_datasets_axis_is_refused(mesh):
    mesh = output_mesh() if mesh == "output mesh" else mesh
    Z, Y = jnp.zeros((2, 4, 1)), jnp.zeros((2, 4, 1))
    with pytest.raises(InputError, match="'datasets' axis"):
        gp.fit_batched(gp.RBF(), Z, Y, mesh=mesh)

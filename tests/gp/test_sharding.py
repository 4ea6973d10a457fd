"""Sharding Y's columns over 4 (host) devices gives the same LML and gradient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent(
    """
    import json, jax, jax.numpy as jnp, numpy as np
    from gpllm import gp
    from gpllm.gp.objective import prepare_targets
    from gpllm.gp.sharding import output_mesh, shard_targets
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    Z, Y = jnp.asarray(rng.normal(size=(32, 3))), jnp.asarray(rng.normal(size=(32, 48)))
    params = gp.params_from_values(gp.RBF(), {"variance": 1.3, "lengthscale": 0.9}, 0.2)
    out = {}
    for path in ("direct", "gram"):
        targets = prepare_targets(Y, path)
        sharded = shard_targets(targets, output_mesh())
        assert len(sharded.factor.sharding.device_set) == 4
        v, g = gp.value_and_grad(gp.RBF(), params, Z, targets)
        vs, gs = gp.value_and_grad(gp.RBF(), params, Z, sharded)
        out[path] = [float(v), float(vs), [float(x) for x in jax.tree.leaves(g)], [float(x) for x in jax.tree.leaves(gs)]]
    from gpllm.errors import InputError
    from gpllm.gp.sharding import shard_columns
    try:
        shard_columns(jnp.zeros((3, 5)), output_mesh())
        out["uneven_refused"] = False
    except InputError:
        out["uneven_refused"] = True
    print(json.dumps(out))
    """
)


def test_sharded_outputs_match_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("uneven_refused"), "5 columns over 4 devices must be refused"
    for path, (v, vs, g, gs) in out.items():
        np.testing.assert_allclose(vs, v, rtol=1e-12, err_msg=path)
        np.testing.assert_allclose(gs, g, rtol=1e-10, err_msg=path)


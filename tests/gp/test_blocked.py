"""Blocked triangular algebra against NumPy/SciPy, and Eq. 1's gradient on the blocked paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from gpllm import gp
from gpllm.gp import blocked
from gpllm.gp.objective import covariance, lml, prepare_targets

N_BLOCKED = 600  # above MIN_BLOCKED: two blocks


def _factor(n, rng):
    X = rng.normal(size=(n, n))
    return np.linalg.cholesky(X @ X.T / n + np.eye(n))


@pytest.mark.parametrize("n", [100, N_BLOCKED, 1100])
def test_block_edges_cover_the_rows_in_near_equal_blocks(n):
    e = blocked.block_edges(n)
    assert e[0] == 0 and e[-1] == n and all(b > a for a, b in zip(e, e[1:]))
    assert (len(e) - 1 == 1) == (n < blocked.MIN_BLOCKED)
    assert max(np.diff(e)) - min(np.diff(e)) <= 1


@pytest.mark.slow
@pytest.mark.parametrize("n", [50, N_BLOCKED, 1100])
@pytest.mark.parametrize("r_fraction", [1.0, 0.7], ids=["square", "trapezoidal"])
def test_products_and_solves_match_numpy(n, r_fraction):
    """Each blocked routine against the dense NumPy/SciPy call, for a lower-triangular
    (R = N) and a lower-trapezoidal (R < N, R not on a block boundary) operand."""
    rng = np.random.default_rng(n)
    r = int(r_fraction * n)
    L = _factor(n, rng)
    V = np.linalg.inv(L)
    F = np.tril(rng.normal(size=(n, r)))
    dense = rng.normal(size=(n, 70))
    tight = dict(rtol=1e-11, atol=1e-11)

    W = np.asarray(blocked.solve_lower(jnp.asarray(L), jnp.asarray(F), trapezoidal=True))
    np.testing.assert_allclose(W, scipy.linalg.solve_triangular(L, F, lower=True), rtol=1e-10, atol=1e-12)
    assert np.all(np.triu(W, 1) == 0), "a trapezoidal right-hand side gives a trapezoidal solution"
    V_blocked = np.asarray(blocked.inverse_lower(jnp.asarray(L)))
    np.testing.assert_allclose(V_blocked, V, rtol=1e-10, atol=1e-12)
    assert np.all(np.triu(V_blocked, 1) == 0)

    for X, trapezoidal in ((F, True), (dense, False)):
        product = np.asarray(
            blocked.triangular_times(jnp.asarray(V), jnp.asarray(X), lower=True, trapezoidal=trapezoidal)
        )
        np.testing.assert_allclose(product, V @ X, **tight)
        np.testing.assert_allclose(
            blocked.triangular_times(jnp.asarray(V.T), jnp.asarray(X), lower=False, trapezoidal=trapezoidal),
            V.T @ X,
            **tight,
        )
        outer = blocked.lower_blocks_of_product(jnp.asarray(X), trapezoidal=trapezoidal)
        np.testing.assert_allclose(blocked.from_lower_blocks(outer), X @ X.T, **tight)
    np.testing.assert_allclose(
        blocked.from_lower_blocks(blocked.gram_of_upper(jnp.asarray(V.T))), V.T @ V, rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize(
    ("d", "path"), [(900, "gram"), (300, "direct"), (450, "gram")], ids=["gram", "direct", "gram-trapezoidal"]
)
@pytest.mark.slow
def test_blocked_gradient_matches_autodiff_through_the_plain_cholesky(d, path):
    """On N = 600 (blocked) the hand-written gradient of every path equals JAX's autodiff
    through an unblocked Cholesky and solve, and the value is unchanged to 1e-12."""
    rng = np.random.default_rng(d)
    Z, Y = jnp.asarray(rng.normal(size=(N_BLOCKED, 4))), jnp.asarray(rng.normal(size=(N_BLOCKED, d)))
    kernel = gp.RBF()
    params = gp.params_from_values(kernel, {"variance": 1.3, "lengthscale": 1.1}, 0.3)
    targets = prepare_targets(Y, path)
    assert targets.lower_triangular == (path == "gram")
    assert targets.factor.shape == (N_BLOCKED, min(d, N_BLOCKED))

    def reference(p):
        L = jnp.linalg.cholesky(covariance(kernel, p, Z))
        W = jax.scipy.linalg.solve_triangular(L, Y, lower=True)
        return -0.5 * jnp.sum(W * W) - d * jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * N_BLOCKED * d * np.log(2 * np.pi)

    value, grad = jax.value_and_grad(lambda p: lml(kernel, p, Z, targets).value)(params)
    ref_value, ref_grad = jax.value_and_grad(reference)(params)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(lml(kernel, params, Z, targets).value, ref_value, rtol=1e-12)  # the solve, not V F
    for got, want in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * abs(float(ref_value)) / N_BLOCKED)


@pytest.mark.slow
def test_blocked_gradient_under_vmap_equals_each_dataset_alone():
    rng = np.random.default_rng(1)
    Z, Y = jnp.asarray(rng.normal(size=(2, N_BLOCKED, 3))), jnp.asarray(rng.normal(size=(2, N_BLOCKED, 200)))
    kernel = gp.RBF()
    params = gp.params_from_values(kernel, {"variance": 0.8, "lengthscale": 1.4}, 0.5)
    grad = jax.grad(lambda p, z, y: lml(kernel, p, z, prepare_targets(y)).value)
    batched = jax.vmap(grad, in_axes=(None, 0, 0))(params, Z, Y)
    for b in range(2):
        alone = grad(params, Z[b], Y[b])
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(alone)):
            np.testing.assert_allclose(got[b], want, rtol=1e-10)


@pytest.mark.slow
def test_value_and_gradient_temporaries_stay_a_few_n_squared():
    """No N x N x D array and no pile of N x N copies: XLA's own accounting of the compiled
    value + gradient (gram path, trapezoidal factor) stays within 10 N^2 + 4 N R of
    temporaries (8.7 N^2 measured at this size)."""
    n, r = 1200, 960
    shape = lambda *s: jax.ShapeDtypeStruct(s, jnp.float64)  # noqa: E731
    kernel = gp.RBF()
    params = gp.params_from_values(kernel, {"variance": 1.0, "lengthscale": 7.0}, 0.3)
    program = jax.jit(jax.value_and_grad(lambda p, z, t: lml(kernel, p, z, t).value))
    compiled = program.lower(params, shape(n, 50), gp.Targets(shape(n, r), shape(), True)).compile()
    assert compiled.memory_analysis().temp_size_in_bytes <= 8 * (10 * n * n + 4 * n * r)

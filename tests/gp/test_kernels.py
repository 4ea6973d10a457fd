"""Kernels against scikit-learn's and NumPy references; safe distances; composition; adapters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.gaussian_process import kernels as skk

from gpllm import gp
from gpllm.errors import InputError
from gpllm.gp.distance import safe_sqrt, squared_distance
from tests.gp.helpers import problem, rbf_gram

VALUES = {"variance": 1.7, "lengthscale": 0.8}


def raw(values):
    """Constrained values as float64 arrays (kernels receive values, not raw parameters)."""
    return jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), values)


def test_squared_distance_matches_numpy_and_is_safe():
    Z, _ = problem(n=30)
    Z2 = Z[:7] + 0.3
    ref = ((Z[:, None] - Z2[None]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distance(jnp.asarray(Z), jnp.asarray(Z2)), ref, rtol=1e-12, atol=1e-12)
    sym = np.asarray(squared_distance(jnp.asarray(np.concatenate([Z, Z]))))
    assert (sym >= 0).all()
    assert np.all(np.diag(sym) == 0)
    # A point duplicated far from the origin: the expansion would cancel badly without centring.
    far = np.full((2, 3), 1e6) + np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(squared_distance(jnp.asarray(far))[0, 1], 1.0, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("kernel_cls", [gp.RBF, gp.Matern12, gp.Matern32, gp.Matern52])
def test_gradient_is_finite_at_zero_distance(kernel_cls):
    x = jnp.ones((2, 3))  # two identical points

    def f(x):
        return jnp.sum(kernel_cls().gram(raw(VALUES), x))

    g = jax.grad(f)(x)
    assert np.all(np.isfinite(g))
    assert np.all(np.isfinite(jax.grad(lambda v: safe_sqrt(v))(0.0)))


SKLEARN_EQUIVALENTS = [
    (gp.RBF(), lambda: skk.ConstantKernel(1.7) * skk.RBF(0.8)),
    (gp.Matern12(), lambda: skk.ConstantKernel(1.7) * skk.Matern(0.8, nu=0.5)),
    (gp.Matern32(), lambda: skk.ConstantKernel(1.7) * skk.Matern(0.8, nu=1.5)),
    (gp.Matern52(), lambda: skk.ConstantKernel(1.7) * skk.Matern(0.8, nu=2.5)),
]


@pytest.mark.parametrize("kernel,sk", SKLEARN_EQUIVALENTS, ids=["rbf", "m12", "m32", "m52"])
def test_stationary_kernels_match_sklearn(kernel, sk):
    Z, _ = problem(n=25)
    Zs = Z[:9] * 1.3
    ours = kernel.gram(raw(VALUES), jnp.asarray(Z), jnp.asarray(Zs))
    np.testing.assert_allclose(ours, sk()(Z, Zs), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(kernel.diag(raw(VALUES), jnp.asarray(Z)), sk().diag(Z), rtol=1e-12)
    np.testing.assert_allclose(kernel.gram(raw(VALUES), jnp.asarray(Z)), sk()(Z), rtol=1e-10, atol=1e-12)


def test_ard_rbf_matches_sklearn_anisotropic():
    Z, _ = problem(n=20, q=3)
    ls = np.array([0.5, 1.0, 2.0])
    params = raw({"variance": 1.3, "lengthscale": ls})
    ours = gp.RBF(ard=True).gram(params, jnp.asarray(Z))
    np.testing.assert_allclose(ours, (skk.ConstantKernel(1.3) * skk.RBF(ls))(Z), rtol=1e-10, atol=1e-12)
    init = gp.RBF(ard=True).init(jnp.asarray(Z))
    assert init["lengthscale"].shape == (3,)


def test_linear_constant_white_match_sklearn():
    Z, _ = problem(n=15)
    Zs = Z[:4] + 1.0
    lin = gp.Linear().gram(raw({"variance": 0.7}), jnp.asarray(Z), jnp.asarray(Zs))
    np.testing.assert_allclose(lin, 0.7 * skk.DotProduct(sigma_0=0.0)(Z, Zs), rtol=1e-12)
    const = gp.Constant().gram(raw({"variance": 2.5}), jnp.asarray(Z), jnp.asarray(Zs))
    np.testing.assert_allclose(const, skk.ConstantKernel(2.5)(Z, Zs), rtol=1e-12)
    white = gp.White()
    np.testing.assert_allclose(white.gram(raw({"variance": 0.3}), jnp.asarray(Z)), skk.WhiteKernel(0.3)(Z), rtol=1e-12)
    np.testing.assert_allclose(white.gram(raw({"variance": 0.3}), jnp.asarray(Z), jnp.asarray(Z)), 0.0)
    for k, v in [(gp.Linear(), 0.7), (gp.Constant(), 2.5), (white, 0.3)]:
        p = raw({"variance": v})
        np.testing.assert_allclose(k.diag(p, jnp.asarray(Z)), np.diag(k.gram(p, jnp.asarray(Z))), rtol=1e-12)


@pytest.mark.slow
def test_sum_product_and_active_columns():
    Z, _ = problem(n=12, q=4)
    text, seq = gp.Active(gp.RBF(), 0, 2), gp.Active(gp.Matern32(), 2, 4)
    k_sum = text + seq + gp.White()
    assert isinstance(k_sum, gp.Sum) and len(k_sum.kernels) == 3  # flattened
    p = k_sum.init(jnp.asarray(Z), scale=3.0)
    expected = (
        gp.RBF().gram(p[0], jnp.asarray(Z[:, :2]))
        + gp.Matern32().gram(p[1], jnp.asarray(Z[:, 2:]))
        + gp.White().gram(p[2], jnp.asarray(Z))
    )
    np.testing.assert_allclose(k_sum.gram(p, jnp.asarray(Z)), expected, rtol=1e-12)
    # The init splits the amplitude evenly across terms.
    np.testing.assert_allclose(np.asarray(k_sum.diag(p, jnp.asarray(Z)))[0], 3.0, rtol=1e-10)
    k_prod = gp.RBF() * gp.Linear()
    pp = k_prod.init(jnp.asarray(Z))
    np.testing.assert_allclose(
        k_prod.gram(pp, jnp.asarray(Z)),
        gp.RBF().gram(pp[0], jnp.asarray(Z)) * gp.Linear().gram(pp[1], jnp.asarray(Z)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(k_prod.diag(pp, jnp.asarray(Z)), np.diag(k_prod.gram(pp, jnp.asarray(Z))), rtol=1e-12)
    with pytest.raises(InputError, match="Active columns"):
        gp.Active(gp.RBF(), 3, 9).gram(p[0], jnp.asarray(Z))


def test_kernels_are_hashable_static_configs():
    assert hash(gp.RBF()) == hash(gp.RBF()) and gp.RBF() == gp.RBF()
    assert gp.RBF() != gp.Matern32()
    assert gp.Active(gp.RBF(), 0, 50) + gp.Active(gp.RBF(), 50, 100) == gp.Active(gp.RBF(), 0, 50) + gp.Active(
        gp.RBF(), 50, 100
    )


def test_function_kernel_equals_builtin_rbf():
    def rbf(p, x, y):
        return p["variance"] * jnp.exp(-0.5 * jnp.sum((x - y) ** 2) / p["lengthscale"] ** 2)

    Z, _ = problem(n=10)
    user = gp.FunctionKernel(rbf, dict(VALUES))
    p = user.init(jnp.asarray(Z))
    np.testing.assert_allclose(p["lengthscale"], 0.8, rtol=1e-12)
    np.testing.assert_allclose(user.gram(p, jnp.asarray(Z)), rbf_gram(Z, Z, 1.7, 0.8), rtol=1e-12)
    np.testing.assert_allclose(user.diag(p, jnp.asarray(Z)), np.full(10, 1.7), rtol=1e-12)
    check_grads(lambda q: user.gram(q, jnp.asarray(Z)), (p,), order=1, modes=["rev"])


@pytest.mark.slow
def test_gpjax_adapter_matches_gpjax_and_ours():
    import gpjax as gpx

    Z, _ = problem(n=10)
    adapter = gp.GPJaxKernel(gpx.kernels.RBF(lengthscale=0.8, variance=1.7))
    p = adapter.init(jnp.asarray(Z))
    np.testing.assert_allclose(adapter.gram(p, jnp.asarray(Z)), rbf_gram(Z, Z, 1.7, 0.8), rtol=1e-10)
    np.testing.assert_allclose(adapter.diag(p, jnp.asarray(Z)), np.full(10, 1.7), rtol=1e-10)
    # Its parameters are GPJax's unconstrained ones: gradients flow through them.
    g = jax.grad(lambda q: jnp.sum(adapter.gram(q, jnp.asarray(Z))))(p)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g))


@pytest.mark.slow
def test_median_distance_init_and_duplicates():
    Z, _ = problem(n=50)
    p = gp.RBF().init(jnp.asarray(Z))
    d = np.sqrt(((Z[:, None] - Z[None]) ** 2).sum(-1))[np.triu_indices(50, 1)]
    np.testing.assert_allclose(p["lengthscale"], np.median(d), rtol=1e-10)
    same = gp.RBF().init(jnp.ones((5, 3)))
    np.testing.assert_allclose(same["lengthscale"], 1.0)


@pytest.mark.parametrize(
    "kernel",
    [gp.RBF(), gp.Matern32(), gp.Linear(), gp.RBF() + gp.White(), gp.Active(gp.RBF(ard=True), 0, 2) * gp.Linear()],
    ids=["rbf", "matern32", "linear", "rbf+white", "active_ard*linear"],
)
@pytest.mark.slow
def test_kernels_that_ignore_zero_columns_give_the_same_gram_and_init(kernel):
    Z = np.random.default_rng(0).normal(size=(9, 3))
    padded = np.pad(Z, ((0, 0), (0, 4)))
    assert kernel.zero_padding_invariant
    params, params_padded = kernel.init(jnp.asarray(Z)), kernel.init(jnp.asarray(padded))
    assert jax.tree.structure(params) == jax.tree.structure(params_padded)
    np.testing.assert_allclose(
        np.asarray(kernel.gram(params_padded, padded)), np.asarray(kernel.gram(params, Z)), rtol=1e-14
    )


def test_per_column_parameters_and_user_kernels_are_not_assumed_to_ignore_zero_columns():
    assert not (gp.RBF(ard=True)).zero_padding_invariant
    assert not (gp.RBF() + gp.Matern52(ard=True)).zero_padding_invariant
    user = gp.FunctionKernel(lambda p, x1, x2: jnp.exp(-jnp.sum((x1 - x2) ** 2)), {})
    assert not (user).zero_padding_invariant

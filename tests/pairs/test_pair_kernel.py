"""The pair kernel: a brute-force reference, symmetry and PSD (property test), and its diagonal."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from gpllm import gp
from gpllm.errors import ShapeError
from gpllm.gp.pair_kernels import PairKernel, pair_inputs

BASES = {
    "rbf": (gp.RBF(), {"variance": 1.3, "lengthscale": 0.9}),
    "matern32+linear": (gp.Matern32() + gp.Linear(), ({"variance": 0.7, "lengthscale": 1.4}, {"variance": 0.2})),
    "rbf+white": (gp.RBF() + gp.White(), ({"variance": 1.0, "lengthscale": 1.0}, {"variance": 0.3})),
}


@partial(jax.jit, static_argnums=0)
def _grams(kernel, values, X, swapped):
    """One compiled program per example: K, K(swapped), K(swapped, X), K(X, X) and diag."""
    return (
        kernel.gram(values, X),
        kernel.gram(values, swapped),
        kernel.gram(values, swapped, X),
        kernel.gram(values, X, X),
        kernel.diag(values, X),
    )


def _values(base_values, s_int=0.8):
    return {"base": jax.tree.map(jnp.asarray, base_values), "interaction_variance": jnp.asarray(s_int)}


def _conditions(rng, n, q, pair_share=0.7):
    return rng.standard_normal((n, q)), rng.standard_normal((n, q)), rng.random(n) < pair_share


def _reference(k, za, zb, wa, zc, zd, wc, s_int):
    """One entry by the formula, with k(u, v) a scalar function of single points."""
    r = lambda u, v: k(u, v) / np.sqrt(k(u, u) * k(v, v))  # noqa: E731
    add = k(za, zc) + wc * k(za, zd) + wa * k(zb, zc) + wa * wc * k(zb, zd)
    return add + s_int * wa * wc * (r(za, zc) * r(zb, zd) + r(za, zd) * r(zb, zc))


@pytest.mark.slow
def test_gram_matches_the_formula_entry_by_entry():
    rng = np.random.default_rng(0)
    kernel, values = PairKernel(gp.RBF()), _values(BASES["rbf"][1])
    X1 = pair_inputs(*_conditions(rng, 6, 3))
    X2 = pair_inputs(*_conditions(rng, 4, 3))
    rbf = lambda u, v: 1.3 * np.exp(-0.5 * np.sum((u - v) ** 2) / 0.9**2)  # noqa: E731
    x1, x2 = np.asarray(X1), np.asarray(X2)
    q = 3
    ref = np.array(
        [[_reference(rbf, a[:q], a[q : 2 * q], a[-1], c[:q], c[q : 2 * q], c[-1], 0.8) for c in x2] for a in x1]
    )
    np.testing.assert_allclose(kernel.gram(values, X1, X2), ref, rtol=1e-12)
    # a single (w = 0) covaries through its own gene only, whatever its second block holds
    single = x1[~x1[:, -1].astype(bool)][:1]
    if single.size:
        moved = single.copy()
        moved[0, q : 2 * q] += 5.0
        np.testing.assert_allclose(kernel.gram(values, moved, X2), kernel.gram(values, single, X2), rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 8),
    q=st.integers(1, 3),
    base=st.sampled_from(sorted(BASES)),
    interaction=st.booleans(),
)
@pytest.mark.slow
def test_symmetric_psd_and_invariant_to_swapping_a_pairs_genes(seed, n, q, base, interaction):
    rng = np.random.default_rng(seed)
    base_kernel, base_values = BASES[base]
    kernel = PairKernel(base_kernel, interaction)
    values = _values(base_values, s_int=float(rng.uniform(0.01, 3.0)))
    if not interaction:
        values.pop("interaction_variance")
    Z_a, Z_b, is_pair = _conditions(rng, n, q)
    X = pair_inputs(Z_a, Z_b, is_pair)
    # swapping a and b in every pair changes nothing (singles keep their gene)
    swapped = pair_inputs(np.where(is_pair[:, None], Z_b, Z_a), np.where(is_pair[:, None], Z_a, Z_b), is_pair)
    K, K_swapped, K_cross_swapped, K_cross, diag = (np.asarray(x) for x in _grams(kernel, values, X, swapped))
    np.testing.assert_allclose(K, K.T, rtol=1e-12, atol=1e-12)
    eig = np.linalg.eigvalsh(K)
    assert eig.min() >= -1e-10 * max(1.0, eig.max())
    np.testing.assert_allclose(K_swapped, K, rtol=1e-10, atol=1e-12)
    # the cross call (where White contributes nothing) too
    np.testing.assert_allclose(K_cross_swapped, K_cross, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(diag, np.diag(K), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    kernel, values = PairKernel(gp.RBF()), _values(BASES["rbf"][1])
    X = pair_inputs(*_conditions(rng, 5, 2))
    check_grads(lambda p: kernel.gram(p, X), (values,), order=1, modes=("rev",), eps=1e-6)


@pytest.mark.slow
def test_pair_kernel_fits_through_gp_fit():
    """It is a plain gpllm Kernel: gp.fit, condition and predict take it as is."""
    rng = np.random.default_rng(2)
    X = pair_inputs(*_conditions(rng, 30, 2))
    Y = rng.standard_normal((30, 5))
    result = gp.fit(PairKernel(gp.RBF()), X, Y, options=gp.FitOptions(max_steps=20))
    post = gp.condition(PairKernel(gp.RBF()), result.params, X, Y)
    mean, var = gp.predict(PairKernel(gp.RBF()), post, X[:3])
    assert mean.shape == (3, 5) and np.all(np.asarray(var) > 0)
    assert set(gp.values_of(PairKernel(gp.RBF()), result.params).kernel) == {"base", "interaction_variance"}


def test_malformed_inputs_are_shape_errors():
    with pytest.raises(ShapeError, match="pair_inputs"):
        pair_inputs(np.ones((3, 2)), np.ones((3, 3)), np.ones(3, bool))
    with pytest.raises(ShapeError, match="2Q \\+ 1"):
        PairKernel().gram(_values(BASES["rbf"][1]), jnp.ones((3, 4)))

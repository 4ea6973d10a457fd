"""Pairwise squared distances by matrix products, numerically safe.

|a - b|^2 = |a|^2 + |b|^2 - 2 a.b turns the O(N M Q) pairwise difference into
one GEMM, which is what makes the Gram matrix cheap (GPJax's pairwise vmap is
the bulk of its cost at N=1400). The expansion can round below zero and loses
precision when the points sit far from the origin, so inputs are centred first
and the result is clamped at zero; on the symmetric diagonal the distance is
set to exactly zero. Every step has a finite gradient at zero distance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def squared_distance(X1: jax.Array, X2: jax.Array | None = None) -> jax.Array:
    """Squared Euclidean distances, (N, Q) x (M, Q) -> (N, M), never negative.

    ``X2=None`` means the symmetric case X2 = X1, whose diagonal is exactly 0.
    """
    shift = jnp.mean(X1, axis=0)
    A = X1 - shift
    B = A if X2 is None else X2 - shift
    sq_a = jnp.sum(A * A, axis=-1)
    sq_b = sq_a if X2 is None else jnp.sum(B * B, axis=-1)
    r2 = sq_a[:, None] + sq_b[None, :] - 2.0 * (A @ B.T)
    r2 = jnp.maximum(r2, 0.0)
    if X2 is None:
        r2 = jnp.where(jnp.eye(r2.shape[0], dtype=bool), 0.0, r2)
    return r2


def safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(x) for x >= 0 whose gradient at 0 is 0 instead of inf (double-where)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)

"""Positivity by softplus: parameters live unconstrained, kernels see positive values.

softplus(x) = log(1 + e^x) is linear for large x, so optimisers take sensible
steps on lengthscales spanning orders of magnitude, and it never underflows to
exactly 0 the way a plain exp can drive a noise variance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def positive(raw: ArrayLike) -> jax.Array:
    """Constrained value of an unconstrained parameter: softplus(raw) > 0."""
    return jax.nn.softplus(raw)


def unconstrain(value: ArrayLike) -> jax.Array:
    """Inverse of :func:`positive`: log(e^v - 1), written stably as v + log(1 - e^-v)."""
    value = jnp.asarray(value)
    return value + jnp.log(-jnp.expm1(-value))


def positive_tree(raw_tree):
    """:func:`positive` applied to every leaf of a pytree."""
    return jax.tree.map(positive, raw_tree)


def unconstrain_tree(tree):
    """:func:`unconstrain` applied to every leaf of a pytree."""
    return jax.tree.map(unconstrain, tree)

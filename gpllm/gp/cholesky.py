"""Cholesky factorisation that escalates its jitter instead of returning NaN.

A Gram matrix with duplicated inputs and no noise is only semi-definite, and
LAPACK's potrf then fails (JAX reports the failure as NaN in the factor). We
try the exact matrix first, so a well-posed problem gets the exact answer, and
on failure retry with jitter * mean(diag A) added to the diagonal, growing
tenfold per try, inside ``lax.while_loop`` so it works under jit and vmap.
The jitter used is returned; a factor still NaN after the last try is
reported by the callers as a :class:`gpllm.errors.CholeskyError`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class Factor(NamedTuple):
    """Lower Cholesky factor L of A + jitter * I, with the jitter that was needed."""

    L: jax.Array  # (N, N), lower triangular; NaN if every try failed
    jitter: jax.Array  # () absolute amount added to the diagonal


def jitter_schedule(dtype) -> tuple[float, float]:
    """(first relative jitter, largest relative jitter) for a dtype.

    float64 starts at 1e-10 and float32 at 1e-6 (a few hundred ulps of the
    diagonal); both stop at 1e-2, beyond which the model is no longer the one
    asked for and failing loudly is more honest.
    """
    first = 1e-10 if jnp.finfo(dtype).bits >= 64 else 1e-6
    return first, 1e-2


def is_finite_factor(L: jax.Array) -> jax.Array:
    """True when the factor holds no NaN/inf (potrf succeeded)."""
    return jnp.all(jnp.isfinite(L))


def cholesky_with_jitter(A: jax.Array) -> Factor:
    """L with L L^T = A + jitter I, jitter = 0 if A is numerically positive definite.

    A (N, N), taken as (A + A^T) / 2 (as ``jnp.linalg.cholesky`` does), so that
    gradients with respect to A are symmetric. Each failed try multiplies the
    relative jitter by 10, from :func:`jitter_schedule`'s first value up to its largest.
    """
    first, largest = jitter_schedule(A.dtype)
    A = 0.5 * (A + A.T)
    scale = jnp.mean(jnp.diag(A))
    scale = jnp.where(scale > 0, scale, 1.0)

    def factor_with(relative):
        jitter = (relative * scale).astype(A.dtype)
        rows, cols = (lax.broadcasted_iota(jnp.int32, A.shape, axis) for axis in (0, 1))
        # A mask, not jitter * eye(N): a captured identity is an N x N array that
        # every call builds and copies into the loop (~20 ms at N = 1400, measured).
        diagonal_raised = jnp.where(rows == cols, A + jitter, A)
        return Factor(lax.linalg.cholesky(diagonal_raised, symmetrize_input=False), jitter)

    def needs_retry(carry):
        relative, factor = carry
        return (~is_finite_factor(factor.L)) & (relative < largest * (1 + 1e-6))

    def retry(carry):
        relative, _ = carry
        relative = jnp.where(relative == 0, first, 10.0 * relative)
        return relative, factor_with(relative)

    zero = jnp.zeros((), A.dtype)
    # The exact matrix first, outside the loop, so the common case is one potrf and
    # none of the loop's carry; under vmap the cond is a select and the loop runs 0 times.
    exact = Factor(lax.linalg.cholesky(A, symmetrize_input=False), zero)

    def escalate() -> Factor:
        return lax.while_loop(needs_retry, retry, (zero, exact))[1]

    return lax.cond(is_finite_factor(exact.L), lambda: exact, escalate)

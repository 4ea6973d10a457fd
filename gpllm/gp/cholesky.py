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

    A (N, N) symmetric. Each failed try multiplies the relative jitter by 10,
    from :func:`jitter_schedule`'s first value up to its largest.
    """
    first, largest = jitter_schedule(A.dtype)
    scale = jnp.mean(jnp.diag(A))
    scale = jnp.where(scale > 0, scale, 1.0)
    eye = jnp.eye(A.shape[-1], dtype=A.dtype)

    def factor_with(relative):
        jitter = (relative * scale).astype(A.dtype)
        return Factor(jnp.linalg.cholesky(A + jitter * eye), jitter)

    def needs_retry(carry):
        relative, factor = carry
        return (~is_finite_factor(factor.L)) & (relative < largest * (1 + 1e-6))

    def retry(carry):
        relative, _ = carry
        relative = jnp.where(relative == 0, first, 10.0 * relative)
        return relative, factor_with(relative)

    start = (jnp.zeros((), A.dtype), factor_with(jnp.zeros((), A.dtype)))
    _, factor = lax.while_loop(needs_retry, retry, start)
    return factor

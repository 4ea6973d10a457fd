"""Batches chosen greedily under a GP, conditioning on each chosen point by a rank-one update.

For a GP the predictive covariance after measuring a set of inputs does not
depend on what is measured there, so a whole batch can be planned before any
of it is measured. With S the latent (noise-free) joint covariance over the P
pool points given the training set, and s2 the noise variance, measuring pool
point j (with noise) updates it exactly by

    S <- S - S[:, j] S[j, :] / (S_jj + s2)                       (rank one, O(P^2))

so a batch of B points costs one (P, P) covariance and B rank-one updates,
never a refit. Each step takes the available point with the highest score:

    "variance":   S_jj                                       (maximum predictive variance)
    "reduction":  sum_{i in T} S_ij^2 / (S_jj + s2)           (drop of the total variance over T)
    "ucb":        effect_j + beta sqrt(S_jj)                  (upper confidence bound; the
                  effect is the GP mean's, which a measurement at its own value leaves unchanged)

T is the set of pool points not measured when the batch starts. Everything
here is pure and compiled once per (pool size, batch size, score).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

from gpllm.gp.kernels import Kernel
from gpllm.gp.objective import values_of
from gpllm.gp.posterior import Posterior, predict_mean, predictive_covariance

Score = Literal["variance", "reduction", "ucb"]
SCORES = ("variance", "reduction", "ucb")


def _scores(score: Score, S, noise, target, effect, beta):
    variance = jnp.diag(S)
    if score == "variance":
        return variance
    if score == "reduction":
        return jnp.sum(jnp.where(target[:, None], S * S, 0.0), axis=0) / (variance + noise)
    return effect + beta * jnp.sqrt(jnp.maximum(variance, 0.0))


def condition_on(S: jax.Array, j, noise) -> jax.Array:
    """S (P, P) after a noisy measurement at pool point j: S - S[:, j] S[j, :] / (S_jj + s2)."""
    column = S[:, j]
    return S - jnp.outer(column, column) / (column[j] + noise)


@partial(jax.jit, static_argnames=("score", "batch_size"))
def greedy_batch(
    S: jax.Array,
    noise: jax.Array,
    available: jax.Array,
    *,
    score: Score,
    batch_size: int,
    effect: jax.Array | None = None,
    beta: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """``batch_size`` pool indices, each the best-scoring available point given the ones before.

    S: (P, P) latent predictive covariance of the pool; noise: () s2;
    available: (P,) bool, the points that may be chosen (also the set T whose
    total variance "reduction" counts); effect: (P,) for "ucb".
    Returns (indices (batch_size,), S conditioned on all of them (P, P)).
    The caller ensures ``batch_size <= available.sum()``.
    """
    effect = jnp.zeros(S.shape[0], S.dtype) if effect is None else effect
    target = available

    def step(i, carry):
        S, free, chosen = carry
        j = jnp.argmax(jnp.where(free, _scores(score, S, noise, target, effect, beta), -jnp.inf))
        return condition_on(S, j, noise), free.at[j].set(False), chosen.at[i].set(j.astype(jnp.int32))

    chosen0 = jnp.zeros(batch_size, jnp.int32)
    S, _, chosen = lax.fori_loop(0, batch_size, step, (S, available, chosen0))
    return chosen, S


@partial(jax.jit, static_argnums=0)
def pool_covariance(kernel: Kernel, post: Posterior, Z_pool: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The latent joint covariance of the pool given the training set, (P, P), and s2 ()."""
    S = predictive_covariance(kernel, post, Z_pool.astype(post.Z.dtype), include_noise=False)
    return S, values_of(kernel, post.params).noise


@partial(jax.jit, static_argnums=0, static_argnames="top")
def predicted_effect(
    kernel: Kernel, post: Posterior, offset: jax.Array, Z_pool: jax.Array, ctrl: jax.Array, *, top: int
) -> jax.Array:
    """Mean over each pool point's ``top`` largest predicted |delta| of |mean - ctrl|, (P,).

    The top genes are the prediction's own (an unmeasured knockout's DE genes are unknown).
    """
    delta = predict_mean(kernel, post, Z_pool.astype(post.Z.dtype)) + offset - ctrl
    return jnp.mean(lax.top_k(jnp.abs(delta), top)[0], axis=1)

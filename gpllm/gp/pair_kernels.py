"""A symmetric kernel over unordered gene pairs, built from any single-gene kernel k.

Inputs hold both genes' embeddings and a flag, X = [z_a, z_b, w] (N, 2Q + 1)
(:func:`pair_inputs`): w = 1 for the pair {a, b}, w = 0 for the single {a}
(then z_b is ignored). For conditions x = ({a, b}, v) and x' = ({c, d}, w):

    k_add = k(a,c) + w k(a,d) + v k(b,c) + v w k(b,d)
    k_int = v w s_int [r(a,c) r(b,d) + r(a,d) r(b,c)],    r(u, u') = k(u,u') / sqrt(k(u,u) k(u',u'))
    k_pair = k_add + k_int                               (``interaction=False``: k_add alone)

Why singles are {a} with their own flag rather than the pair {a, a}: a
measured single is f(a), a pair f(a) + f(b) + g(a, b), the additive model
plus an interaction. With the flag, k_add is exactly the covariance of
f(a) + w f(b) for f ~ GP(0, k), so singles and pairs inform one shared f
(the additive part) and only pairs inform g. As {a, a} a single would count
f(a) twice and carry a spurious self-interaction g(a, a).

Both terms are positive semi-definite: k_add is the inner product of the
feature sums phi(a) + v phi(b), k_int that of the symmetrised tensor products
of the normalised features; swapping a and b (or c and d) in a pair leaves
both unchanged. The interaction uses k's correlation r so that its own
variance s_int (a positive parameter) is in the outputs' units whatever k's
amplitude, and shares k's other parameters (lengthscales).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gpllm.errors import ShapeError
from gpllm.gp.kernels import RBF, Kernel, Params
from gpllm.gp.parameters import positive


def pair_inputs(Z_a: ArrayLike, Z_b: ArrayLike, is_pair: ArrayLike) -> jax.Array:
    """X (N, 2Q + 1) = [Z_a, Z_b, w] for Z_a, Z_b (N, Q) and is_pair (N,) bool.

    A single's second block is a copy of its first (any value would do: w = 0
    removes it), so that its rows look like any other to a kernel's ``init``.
    """
    Z_a, Z_b = jnp.asarray(Z_a), jnp.asarray(Z_b)
    w = jnp.asarray(is_pair, Z_a.dtype)
    if Z_a.ndim != 2 or Z_a.shape != Z_b.shape or w.shape != Z_a.shape[:1]:
        raise ShapeError(
            f"pair_inputs: Z_a {Z_a.shape} and Z_b {Z_b.shape} must be (N, Q) alike and is_pair {w.shape} (N,)"
        )
    Z_b = jnp.where(w[:, None] > 0, Z_b, Z_a)
    return jnp.concatenate([Z_a, Z_b, w[:, None]], axis=1)


def _split(X: jax.Array):
    """(z_a (N, Q), z_b (N, Q), w (N,)) from X (N, 2Q + 1)."""
    if X.shape[-1] % 2 != 1 or X.shape[-1] < 3:
        raise ShapeError(f"PairKernel: inputs must be [z_a, z_b, w] with 2Q + 1 columns, got {X.shape[-1]}")
    q = (X.shape[-1] - 1) // 2
    return X[:, :q], X[:, q : 2 * q], X[:, 2 * q]


@dataclasses.dataclass(frozen=True)
class PairKernel(Kernel):
    """k_add + k_int over pairs (see the module docstring); ``base`` is the single-gene k.

    Parameters: ``{"base": base's, "interaction_variance": s_int}`` (the latter
    only with ``interaction=True``; positive).
    """

    base: Kernel = RBF()
    interaction: bool = True

    def init(self, X, scale=1.0):
        a, b, _ = _split(X)
        # a pair's additive part has twice a single's variance: start each gene at a quarter
        values = {"base": self.base.init(jnp.concatenate([a, b]), scale / 2)}
        if self.interaction:
            values["interaction_variance"] = jnp.asarray(scale / 4, X.dtype)
        return values

    def constraints(self):
        out = {"base": self.base.constraints()}
        if self.interaction:
            out["interaction_variance"] = positive
        return out

    def _cross(self, params: Params, X1, X2):
        """The four base blocks k(a,c), k(a,d), k(b,c), k(b,d) and both flags."""

        def k(u, v=None):
            return self.base.gram(params["base"], u, v)

        a, b, v = _split(X1)
        if X2 is None:  # the symmetric call: k's own diagonal terms (e.g. White) stay on
            k_ad = k(a, b)
            return (k(a), k_ad, k_ad.T, k(b)), (a, b, v), (a, b, v)
        c, d, w = _split(X2)
        return (k(a, c), k(a, d), k(b, c), k(b, d)), (a, b, v), (c, d, w)

    def gram(self, params, X1, X2=None):
        (k_ac, k_ad, k_bc, k_bd), (a, b, v), (c, d, w) = self._cross(params, X1, X2)
        V, W = v[:, None], w[None, :]
        out = k_ac + W * k_ad + V * k_bc + V * W * k_bd
        if not self.interaction:
            return out

        def inv(u):
            return jax.lax.rsqrt(self.base.diag(params["base"], u))

        norm = (inv(a) * inv(b))[:, None] * (inv(c) * inv(d))[None, :]
        return out + params["interaction_variance"] * V * W * norm * (k_ac * k_bd + k_ad * k_bc)

    def diag(self, params, X):
        a, b, w = _split(X)
        k_aa, k_bb = self.base.diag(params["base"], a), self.base.diag(params["base"], b)
        k_ab = jax.vmap(lambda x, y: self.base.gram(params["base"], x[None], y[None])[0, 0])(a, b)
        out = k_aa + w * (2.0 * k_ab + k_bb)
        if not self.interaction:
            return out
        return out + params["interaction_variance"] * w * (1.0 + k_ab**2 / (k_aa * k_bb))


__all__ = ["PairKernel", "pair_inputs"]

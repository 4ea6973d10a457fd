"""A kernel and an optimiser from a user's own file: RBF on a learned low-rank projection.

    k(x, x') = s2 exp(-|P^T x - P^T x'|^2 / 2),     P (Q, r) real-valued, learned by Eq. 1

The paper reduces each embedding to its top 50 principal components and fits
one lengthscale. This kernel instead reads the raw embedding (1536-d text,
1024-d sequence; ``text@raw`` in a config) and learns the projection itself:
P starts at the top-r principal directions of the training inputs, scaled so
that the median projected distance is 1 (the paper's lengthscale rule), and
the likelihood may then rotate and stretch it. P is a real-valued parameter
(``gp.real``), something a softplus-only parameterisation could not express.

Nothing here edits gpllm. Run it with ``experiments/projected_kernel.toml``:

    gpllm reproduce --config experiments/projected_kernel.toml
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import optax

from gpllm import gp

RANK = 16


@dataclasses.dataclass(frozen=True)
class ProjectedRBF(gp.Kernel):
    """RBF on P^T x with a learned (Q, rank) projection P and a positive variance."""

    rank: int = RANK

    def init(self, Z, scale=1.0):
        Zc = Z - jnp.mean(Z, axis=0)
        _, _, Vt = jnp.linalg.svd(Zc, full_matrices=False)
        P = Vt[: self.rank].T  # (Q, r): the top principal directions
        P = P / gp.median_distance(Z @ P)
        return {"variance": jnp.asarray(scale, Z.dtype), "projection": P}

    def constraints(self):
        return {"variance": gp.positive, "projection": gp.real}

    def gram(self, values, X1, X2=None):
        P = values["projection"]
        r2 = gp.squared_distance(X1 @ P, None if X2 is None else X2 @ P)
        return values["variance"] * jnp.exp(-0.5 * r2)

    def diag(self, values, X):
        return jnp.full((X.shape[0],), values["variance"], dtype=X.dtype)


def _decay_projection_only(params):
    """Weight decay on the projection (a prior pulling it towards 0: a smoother kernel), not
    on the variance or the noise, whose raw softplus values have no natural zero."""
    return gp.GPParams(kernel={"variance": False, "projection": True}, noise=False)


#: A user-built optax chain: clipped AdamW with a cosine schedule. Built once, so
#: every fit shares one compiled program (optax objects compare by identity).
OPTIMIZER = optax.chain(
    optax.clip_by_global_norm(1.0),
    optax.adamw(optax.cosine_decay_schedule(0.02, 300), weight_decay=1e-3, mask=_decay_projection_only),
)

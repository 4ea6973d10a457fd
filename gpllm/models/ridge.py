"""Multi-output ridge regression with an intercept, penalty tuned by LOO or GCV.

    W = argmin |Yc - Zc W|_F^2 + lam |W|_F^2,   b = y_bar - z_bar W,
    y_hat(z) = z W + b,

Zc, Yc centred by the training means (the intercept is not penalised; sklearn's
``Ridge(alpha=lam)`` convention). Everything comes from one thin SVD
Zc = U diag(s) V^T, valid for N < Q as well:

    W = V diag(s / (s^2 + lam)) U^T Yc,
    H = 11^T / N + U diag(s^2 / (s^2 + lam)) U^T      (hat matrix),

so the leave-one-out residual of point i, e_i / (1 - H_ii), is exact (the
intercept is refitted without i) and costs one (N, r) x (r, G) product per lam.
``lam=0`` is the unpenalised least-squares fit (minimum-norm, i.e. the
pseudo-inverse, when Zc is rank deficient).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gpllm.errors import InputError
from gpllm.models.base import Array, Prediction, check_fit_inputs, check_predict_inputs, scalar_record

#: Default penalty grid, in multiples of the mean eigenvalue of Zc^T Zc
#: (|Zc|_F^2 / Q), so that it adapts to the embedding's scale: from nearly
#: unpenalised least squares (1e-6) to nearly the training mean (1e4).
DEFAULT_GRID: tuple[float, ...] = tuple(float(r) for r in np.logspace(-6, 4, 41))


class RidgeState(NamedTuple):
    """Fitted ridge.

    W: (Q, G) coefficients; b: (G,) intercept; lam: () the penalty used.
    lam_grid: (K,) penalties scored (absolute units; tuned only, else (0,)).
    cv_mse: (K,) LOO or GCV mean squared error per penalty (tuned only, else (0,)).
    """

    W: Array
    b: Array
    lam: Array
    lam_grid: Array
    cv_mse: Array


@dataclass(frozen=True)
class Ridge:
    """Ridge regression of Y on Z with an unpenalised intercept.

    lam: a penalty >= 0 (0 = ordinary least squares, named "linear"), or
        "loo" / "gcv" to choose it on the training set by exact leave-one-out
        or by generalised cross-validation over ``grid``.
    grid: candidate penalties relative to |Zc|_F^2 / Q (the mean eigenvalue of
        Zc^T Zc); the state records them in absolute units.
    """

    lam: float | Literal["loo", "gcv"] = "loo"
    grid: tuple[float, ...] = DEFAULT_GRID

    def __post_init__(self) -> None:
        if isinstance(self.lam, str):
            if self.lam not in ("loo", "gcv"):
                raise InputError(f"Ridge lam must be >= 0, 'loo' or 'gcv', not {self.lam!r}")
        elif not (isinstance(self.lam, (int, float)) and np.isfinite(self.lam) and self.lam >= 0):
            raise InputError(f"Ridge lam must be a finite number >= 0, not {self.lam!r}")
        grid = tuple(float(r) for r in self.grid)
        if not grid or not all(np.isfinite(r) and r > 0 for r in grid):
            raise InputError(f"Ridge grid must be non-empty, finite and > 0, not {self.grid!r}")
        object.__setattr__(self, "grid", tuple(sorted(set(grid))))
        if not isinstance(self.lam, str):
            object.__setattr__(self, "lam", float(self.lam))

    @property
    def name(self) -> str:
        if isinstance(self.lam, str):
            return f"ridge_{self.lam}"
        return "linear" if self.lam == 0 else f"ridge_lam{self.lam:g}"

    def fit(self, Z_train: Array, Y_train: Array) -> RidgeState:
        """Z_train (N, Q), Y_train (N, G) -> RidgeState (tunes lam if asked)."""
        Z, Y = check_fit_inputs(Z_train, Y_train, min_rows=2 if isinstance(self.lam, str) else 1)
        return _fit(self, Z, Y)

    def record(self, state: RidgeState) -> dict:
        """The penalty in use: ``{"lam": lam}``."""
        return scalar_record(state)

    def predict(self, state: RidgeState, Z_test: Array) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean = Z_test W + b (M, G), var None)."""
        Z = check_predict_inputs(state.W.shape[0], Z_test, dtype=state.W.dtype)
        return _predict(state, Z)


@partial(jax.jit, static_argnums=0)
def _fit(model: Ridge, Z: Array, Y: Array) -> RidgeState:
    n, q = Z.shape
    z_bar, y_bar = Z.mean(axis=0), Y.mean(axis=0)
    Zc, Yc = Z - z_bar, Y - y_bar
    U, s, Vt = jnp.linalg.svd(Zc, full_matrices=False)
    # Singular values below lstsq's default cutoff count as zero: their
    # directions are rounding noise, and at lam = 0 dividing by them would blow up.
    keep = s > jnp.finfo(Z.dtype).eps * max(n, q) * s[0]
    s = jnp.where(keep, s, 0.0)
    P = U.T @ Yc  # (r, G): Yc in the left singular basis
    if isinstance(model.lam, str):
        lam_grid = jnp.sum(s**2) / q * jnp.asarray(model.grid, Z.dtype)
        score = partial(_cv_mse, U, s, keep, _ResidualMoments.of(U, P, Yc), gcv=model.lam == "gcv")
        cv_mse = jax.lax.map(score, lam_grid)
        # Tiny penalties can make 1 - H_ii round to 0 (an infinite LOO score):
        # such a lam is never the choice.
        lam = lam_grid[jnp.argmin(jnp.where(jnp.isfinite(cv_mse), cv_mse, jnp.inf))]
    else:
        lam = jnp.asarray(model.lam, Z.dtype)
        lam_grid = cv_mse = jnp.zeros((0,), Z.dtype)
    shrink = jnp.where(keep, s / jnp.where(keep, s**2 + lam, 1.0), 0.0)
    W = Vt.T @ (shrink[:, None] * P)
    return RidgeState(W, y_bar - z_bar @ W, lam, lam_grid, cv_mse)


class _ResidualMoments(NamedTuple):
    """What every penalty's training residuals share, so that scoring one lam
    costs O(N r^2) instead of a pass over the (N, G) residual matrix.

    (I - H) Yc = E0 + U diag(1 - d) P with E0 = Yc - U P (the part outside Zc's
    column space), hence per row
    |e_i|^2 = |E0_i|^2 + 2 a_i . B_i + a_i C a_i^T,   a_i = U_i * (1 - d),
    with B = E0 P^T (N, r) and C = P P^T (r, r).
    """

    outside_sq: Array  # (N,) |E0_i|^2
    cross: Array  # (N, r) B
    gram: Array  # (r, r) C
    n_outputs: int  # G

    @classmethod
    def of(cls, U: Array, P: Array, Yc: Array) -> "_ResidualMoments":
        E0 = Yc - U @ P
        return cls(jnp.sum(E0 * E0, axis=1), E0 @ P.T, P @ P.T, Yc.shape[1])

    def row_mean_sq(self, a: Array) -> Array:
        """|e_i|^2 / G (N,) for a = U diag(1 - d) (N, r): each row's mean squared residual."""
        quad = jnp.sum(a * (a @ self.gram), axis=1)
        # Each term is a sum of squares up to rounding; clamp the total at 0.
        total = self.outside_sq + 2.0 * jnp.sum(a * self.cross, axis=1) + quad
        return jnp.maximum(total, 0.0) / self.n_outputs


def _cv_mse(
    U: Array, s: Array, keep: Array, moments: _ResidualMoments, lam: Array, *, gcv: bool
) -> Array:
    """LOO (or GCV) mean squared error over all N x G entries for one lam.

    LOO: mean_i |e_i|^2 / (1 - H_ii)^2;  GCV: mean_i |e_i|^2 / (1 - tr(H)/N)^2,
    with e = (I - H) Yc the training residuals (rows from ``moments``).
    """
    n = U.shape[0]
    denom = jnp.where(keep, s**2 + lam, 1.0)
    d = jnp.where(keep, s**2 / denom, 0.0)  # (r,) eigenvalues of H (centred part)
    # 1 - d = lam / (s^2 + lam), formed directly: as 1 - d it would lose all
    # precision for small lam, exactly where LOO divides by it.
    one_minus_d = jnp.where(keep, lam / denom, 1.0)
    row_sq = moments.row_mean_sq(U * one_minus_d)
    if gcv:
        # N (1 - tr(H)/N) = N - 1 - sum_k d_k, summed from the 1 - d_k terms (the
        # r columns of U count r, the rest of R^N and the intercept N - r - 1).
        n_minus_trace = jnp.sum(one_minus_d) + (n - U.shape[1] - 1.0)
        return jnp.mean(row_sq) / (n_minus_trace / n) ** 2
    # 1 - H_ii = (1 - 1/N - sum_k U_ik^2) + sum_k U_ik^2 (1 - d_k): the first
    # bracket is the leverage outside Zc's column space (often 0).
    u2 = jnp.where(keep, U**2, 0.0)
    outside = jnp.maximum(1.0 - 1.0 / n - jnp.sum(u2, axis=1), 0.0)
    one_minus_h = outside + u2 @ one_minus_d
    return jnp.mean(row_sq / one_minus_h**2)


@jax.jit
def _predict(state: RidgeState, Z: Array) -> Prediction:
    return Prediction(Z @ state.W + state.b, None)

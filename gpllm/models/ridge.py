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

Predictive variance, per test point and gene (M, G): the posterior
predictive of Bayesian ridge at the chosen lam (prior W ~ N(0, s2_g / lam I),
flat prior on the intercept, noise s2_g per gene),

    var_g(z) = s2_g (1 + h(z)),   h(z) = x^T (X^T X + Lam)^+ x,   x = (1, z - z_bar),

X = [1, Zc], Lam = diag(0, lam I): h is the leverage the hat matrix would give z
(1/N for the intercept plus the penalised spread of the weights; at a
training point h = H_ii). The noise s2_g is estimated from the exact LOO
residuals r_i = e_i / (1 - H_ii) at the chosen lam:

    s2_g = 1/N sum_i r_ig^2 (1 - H_ii) = 1/N sum_i e_ig^2 / (1 - H_ii),

unbiased for least squares (Var e_i = s2 (1 - H_ii)); for ridge it also takes
in the squared bias the penalty adds. Held out, point i's variance is
s2_g (1 + h_{-i}(z_i)) = s2_g / (1 - H_ii) (Sherman-Morrison), so the LOO
residuals scaled by their variances average exactly 1 per gene: a
recalibration fitted on them (the ``heldout`` hook) leaves ridge unchanged.
With lam = 0, directions of z outside Zc's row space count 0 (the
pseudo-inverse), and a fit with no residual degrees of freedom (N <= rank + 1)
has no estimate of s2: its variance falls to the floor of
:func:`~gpllm.models.base.variance_floor`, and the calibration metrics show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gpllm.errors import InputError
from gpllm.models.base import (
    Array,
    Fold,
    FoldFit,
    HeldOut,
    Prediction,
    Record,
    check_fit_inputs,
    check_predict_inputs,
    scalar_record,
    variance_floor,
)
from gpllm.models.padding import predict_rows

#: Default penalty grid, in multiples of the mean eigenvalue of Zc^T Zc
#: (|Zc|_F^2 / Q), so that it adapts to the embedding's scale: from nearly
#: unpenalised least squares (1e-6) to nearly the training mean (1e4).
DEFAULT_GRID: tuple[float, ...] = tuple(float(r) for r in np.logspace(-6, 4, 41))


class RidgeState(NamedTuple):
    """Fitted ridge.

    W: (Q, G) coefficients; b: (G,) intercept; lam: () the penalty used.
    lam_grid: (K,) penalties scored (absolute units; tuned only, else (0,)).
    cv_mse: (K,) LOO or GCV mean squared error per penalty (tuned only, else (0,)).
    z_bar: (Q,) training mean of Z.
    leverage: (Q + 1, Q + 1) (X^T X + Lam)^+ (module docstring): h(z) = x^T leverage x.
    noise_var: (G,) s2_g, the per-gene noise variance from the LOO residuals.
    one_minus_h: (N,) 1 - H_ii at the training points (for the ``heldout`` hook).
    """

    W: Array
    b: Array
    lam: Array
    lam_grid: Array
    cv_mse: Array
    z_bar: Array
    leverage: Array
    noise_var: Array
    one_minus_h: Array


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

    def fit(self, Z_train: ArrayLike, Y_train: ArrayLike) -> RidgeState:
        """Z_train (N, Q), Y_train (N, G) -> RidgeState (tunes lam if asked)."""
        return _fit(self, *self._checked(Z_train, Y_train))

    def fit_predict_folds(self, folds: Sequence[Fold], starts: Sequence[Record | None] | None = None) -> list[FoldFit]:
        """Each fold's fit and held-out predictions in one compiled program per training size
        (the held-out check on 1 - H_ii included), and its prediction; ``starts`` are not used."""
        out = []
        for fold in folds:
            state, heldout, has_heldout = _fit_and_heldout(self, *self._checked(fold.Z_train, fold.Y_train))
            fit = FoldFit(self.predict(state, fold.Z_test), self.record(state), heldout if has_heldout else None)
            out.append(fit)
        return out

    def _checked(self, Z_train: ArrayLike, Y_train: ArrayLike) -> tuple[Array, Array]:
        return check_fit_inputs(Z_train, Y_train, min_rows=2 if isinstance(self.lam, str) else 1)

    def record(self, state: RidgeState) -> dict:
        """The penalty in use: ``{"lam": lam}``."""
        return scalar_record(state)

    def predict(self, state: RidgeState, Z_test: ArrayLike) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean = Z_test W + b (M, G), var = s2 (1 + h(z)) (M, G))."""
        Z = check_predict_inputs(state.W.shape[0], Z_test, dtype=state.W.dtype)
        return predict_rows(lambda rows: _predict(state, rows), Z)

    def heldout(self, state: RidgeState, Z_train, Y_train) -> HeldOut | None:
        """Exact LOO residuals e_i / (1 - H_ii) (lam and s2 held) and variances s2 / (1 - H_ii);
        None when a training point has no residual degrees of freedom (1 - H_ii ~ 0)."""
        if not bool(_has_heldout(state)):
            return None
        Z, Y = (jnp.asarray(a, state.W.dtype) for a in (Z_train, Y_train))
        return _heldout(state, Z, Y)


@partial(jax.jit, static_argnums=0)
def _fit_and_heldout(model: Ridge, Z: Array, Y: Array) -> tuple[RidgeState, HeldOut, Array]:
    """The fit, its held-out predictions and whether they are defined (:func:`_has_heldout`)."""
    state = _fit(model, Z, Y)
    return state, _heldout(state, Z, Y), _has_heldout(state)


def _has_heldout(state: RidgeState) -> Array:
    """() bool: every training point has residual degrees of freedom (1 - H_ii > tol)."""
    return jnp.all(state.one_minus_h > _leverage_tol(state.W.dtype))


@partial(jax.jit, static_argnums=0)
def _fit(model: Ridge, Z: Array, Y: Array) -> RidgeState:
    n, q = Z.shape
    z_bar, y_bar = Z.mean(axis=0), Y.mean(axis=0)
    Zc, Yc = Z - z_bar, Y - y_bar
    U, s, Vt = _thin_svd(Zc)
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
    one_minus_h = _one_minus_leverage(U, s, keep, lam)
    # e_i^2 / (1 - H_ii), left out where 1 - H_ii ~ 0: such a point is interpolated
    # (e_i ~ 0 too) and says nothing about the noise.
    ok = one_minus_h > _leverage_tol(Z.dtype)
    E = Yc - Zc @ W
    per_point = jnp.where(ok[:, None], E * E / jnp.where(ok, one_minus_h, 1.0)[:, None], 0.0)
    noise_var = jnp.sum(per_point, axis=0) / jnp.maximum(jnp.sum(ok), 1)
    noise_var = jnp.maximum(noise_var, variance_floor(Y))
    return RidgeState(
        W,
        y_bar - z_bar @ W,
        lam,
        lam_grid,
        cv_mse,
        z_bar,
        _leverage_matrix(n, Vt, s, keep, lam),
        noise_var,
        one_minus_h,
    )


def _thin_svd(A: Array) -> tuple[Array, Array, Array]:
    """A (N, Q) = U diag(s) Vt with U (N, r), s (r,), Vt (r, Q), r = min(N, Q).

    For N > Q through a QR first, A = Q_ R, and the SVD of the small R = U_R diag(s) Vt,
    U = Q_ U_R: the same factors up to rounding (and the signs of singular pairs), and on CPU
    several times cheaper than LAPACK's SVD of the tall matrix itself.
    """
    n, q = A.shape
    if n <= q:
        U, s, Vt = jnp.linalg.svd(A, full_matrices=False)
        return U, s, Vt
    Q_, R = jnp.linalg.qr(A)
    U_R, s, Vt = jnp.linalg.svd(R)
    return Q_ @ U_R, s, Vt


def _leverage_tol(dtype) -> float:
    """1 - H_ii below this counts as 0 (an interpolated point)."""
    return float(np.sqrt(np.finfo(dtype).eps))


def _leverage_matrix(n: int, Vt: Array, s: Array, keep: Array, lam: Array) -> Array:
    """(X^T X + Lam)^+ for X = [1, Zc], Lam = diag(0, lam I), (Q + 1, Q + 1).

    X^T X = diag(N, Zc^T Zc) since Zc is centred, so the inverse is block
    diagonal: 1/N, and V diag(1/(s^2 + lam)) V^T on Zc's row space plus
    (I - V V^T) / lam outside it (the prior's variance; 0 when lam = 0).
    """
    q = Vt.shape[1]
    Vk = jnp.where(keep[:, None], Vt, 0.0)
    inside = Vk.T @ (jnp.where(keep, 1.0 / jnp.where(keep, s**2 + lam, 1.0), 0.0)[:, None] * Vk)
    outside = (jnp.eye(q, dtype=Vt.dtype) - Vk.T @ Vk) * jnp.where(lam > 0, 1.0 / jnp.where(lam > 0, lam, 1.0), 0.0)
    return jax.scipy.linalg.block_diag(jnp.full((1, 1), 1.0 / n, Vt.dtype), inside + outside)


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
    def of(cls, U: Array, P: Array, Yc: Array) -> _ResidualMoments:
        E0 = Yc - U @ P
        return cls(jnp.sum(E0 * E0, axis=1), E0 @ P.T, P @ P.T, Yc.shape[1])

    def row_mean_sq(self, a: Array) -> Array:
        """|e_i|^2 / G (N,) for a = U diag(1 - d) (N, r): each row's mean squared residual."""
        quad = jnp.sum(a * (a @ self.gram), axis=1)
        # Each term is a sum of squares up to rounding; clamp the total at 0.
        total = self.outside_sq + 2.0 * jnp.sum(a * self.cross, axis=1) + quad
        return jnp.maximum(total, 0.0) / self.n_outputs


def _cv_mse(U: Array, s: Array, keep: Array, moments: _ResidualMoments, lam: Array, *, gcv: bool) -> Array:
    """LOO (or GCV) mean squared error over all N x G entries for one lam.

    LOO: mean_i |e_i|^2 / (1 - H_ii)^2;  GCV: mean_i |e_i|^2 / (1 - tr(H)/N)^2,
    with e = (I - H) Yc the training residuals (rows from ``moments``).
    """
    n = U.shape[0]
    one_minus_d = _one_minus_d(s, keep, lam)
    row_sq = moments.row_mean_sq(U * one_minus_d)
    if gcv:
        # N (1 - tr(H)/N) = N - 1 - sum_k d_k, summed from the 1 - d_k terms (the
        # r columns of U count r, the rest of R^N and the intercept N - r - 1).
        n_minus_trace = jnp.sum(one_minus_d) + (n - U.shape[1] - 1.0)
        return jnp.mean(row_sq) / (n_minus_trace / n) ** 2
    return jnp.mean(row_sq / _one_minus_leverage(U, s, keep, lam) ** 2)


def _one_minus_leverage(U: Array, s: Array, keep: Array, lam: Array) -> Array:
    """1 - H_ii (N,) for the hat matrix of the module docstring at penalty lam.

    1 - H_ii = (1 - 1/N - sum_k U_ik^2) + sum_k U_ik^2 (1 - d_k): the first
    bracket is the leverage outside Zc's column space (often 0).
    """
    n = U.shape[0]
    u2 = jnp.where(keep, U**2, 0.0)
    outside = jnp.maximum(1.0 - 1.0 / n - jnp.sum(u2, axis=1), 0.0)
    return outside + u2 @ _one_minus_d(s, keep, lam)


def _one_minus_d(s: Array, keep: Array, lam: Array) -> Array:
    """1 - d_k (r,), d_k = s_k^2 / (s_k^2 + lam) the eigenvalues of H's centred part.

    Formed directly as lam / (s^2 + lam): as 1 - d it would lose all precision
    for small lam, exactly where LOO divides by it.
    """
    return jnp.where(keep, lam / jnp.where(keep, s**2 + lam, 1.0), 1.0)


def _leverage_at(state: RidgeState, Z: Array) -> Array:
    """h(z) (M,) for rows of Z (M, Q): x^T leverage x with x = (1, z - z_bar)."""
    X = jnp.concatenate([jnp.ones((Z.shape[0], 1), Z.dtype), Z - state.z_bar], axis=1)
    return jnp.maximum(jnp.sum((X @ state.leverage) * X, axis=1), 0.0)


@jax.jit
def _predict(state: RidgeState, Z: Array) -> Prediction:
    var = state.noise_var * (1.0 + _leverage_at(state, Z))[:, None]
    return Prediction(Z @ state.W + state.b, var)


@jax.jit
def _heldout(state: RidgeState, Z: Array, Y: Array) -> HeldOut:
    scale = 1.0 / state.one_minus_h[:, None]
    return HeldOut((Y - (Z @ state.W + state.b)) * scale, state.noise_var * scale)

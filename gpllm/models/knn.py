"""k-nearest-neighbour regression in embedding space.

Prediction for a test embedding z: the mean of the expression profiles of the k
training perturbations nearest to z,  y_hat(z) = 1/k sum_{j in N_k(z)} y_j.
With ``k="tune"`` k is chosen on the training set alone by leave-one-out:
each training point is predicted from its k nearest *other* training points,
and the k of the grid with the smallest mean squared error wins.

Ties in distance go to the lower training index.

Predictive variance, per test point and gene (M, G):

    var_g(z) = s2_g c(z),   c(z) = 1/G sum_g t2_g(z) (1 + 1/k) / s2_g   (c = 1 for k = 1),

s2_g the per-gene mean squared leave-one-out error of the model on its
training set (each point predicted from its k nearest other points), and
t2_g(z) the per-gene variance (ddof 1) of z's k neighbours' profiles. If the
test profile is exchangeable with its neighbours, t2_g (1 + 1/k) estimates the
variance of the error of their mean; c(z) carries that spread of the
neighbours, wide where they disagree and narrow where they agree, as one
factor per test point. Why pooled over genes and not t2_g itself: from k <= 3
neighbours t2_g is a chi-square variable with <= 2 degrees of freedom, whose
inverse has an infinite mean, so per-gene spreads would put near-zero
variances on the genes where the neighbours happen to agree (on a small
synthetic case with k = 3, per-gene spreads gave a leave-one-out mean of
r^2 / var of ~18 instead of ~1); averaged over the G genes the ratio is stable. With k = 1 a single neighbour
has no spread and the variance is s2_g, the 1-NN leave-one-out error per gene.
The ``heldout`` hook gives each training point the prediction and variance of
its k nearest other points (k held fixed).
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

Metric = Literal["euclidean", "cosine"]


class KNNState(NamedTuple):
    """Fitted kNN: the training set and the k in use.

    Z: (N, Q) training embeddings (rows unit-normalised for the cosine metric).
    Y: (N, G) training expression profiles.
    k: () int, the number of neighbours used at predict time.
    k_grid: (K,) int, the candidate k's scored by leave-one-out (tuned only; else (0,)).
    loo_mse: (K,) leave-one-out mean squared error per candidate (tuned only; else (0,)).
    loo_var: (G,) s2_g, the per-gene mean squared leave-one-out error at k (module docstring).
    """

    Z: Array
    Y: Array
    k: Array
    k_grid: Array
    loo_mse: Array
    loo_var: Array


def pairwise_distances(A: Array, B: Array, metric: Metric) -> Array:
    """Distances between rows of A (M, Q) and B (N, Q) -> (M, N).

    euclidean: squared distance |a|^2 + |b|^2 - 2 a.b, clamped at 0 (rounding can
    make it slightly negative); ranking by it equals ranking by distance.
    cosine: 1 - a.b / (|a| |b|); a zero row has similarity 0 to everything.
    """
    if metric == "cosine":
        return 1.0 - _unit_rows(A) @ _unit_rows(B).T
    sq = jnp.sum(A * A, axis=1)[:, None] + jnp.sum(B * B, axis=1)[None, :] - 2.0 * (A @ B.T)
    return jnp.maximum(sq, 0.0)


#: Extra float32 candidates fetched per row by :func:`nearest`, so that ties
#: at the k-th float32 value are almost always inside the candidate set.
CANDIDATE_MARGIN = 8


def nearest(D: Array, k: int) -> Array:
    """Column indices of the k smallest entries of each row of D (M, N) -> (M, k).

    Nearest first; ties go to the lower index. Exact in D's dtype.
    Why not just ``lax.top_k(-D, k)``: on CPU it is far slower in float64 than
    in float32 (the figures are on the docs' Benchmarks page). Rounding to float32 is
    monotone, so every true top-k entry is among the float32 top-(k + margin)
    whenever the last candidate's float32 value exceeds the k-th one; the exact
    order is then settled in D's dtype on those few candidates. A row where
    float32 ties reach past the margin falls back to the full exact sort.
    """
    if k == 1:
        return jnp.argmin(D, axis=1).astype(jnp.int32)[:, None]  # first minimum: the lower index
    if D.dtype != jnp.float64:
        return jax.lax.top_k(-D, k)[1]  # ties: the lower index first
    columns = jnp.broadcast_to(jnp.arange(D.shape[1], dtype=jnp.int32), D.shape)
    if k + CANDIDATE_MARGIN >= D.shape[1]:
        return _k_smallest(D, columns, k)
    D32 = D.astype(jnp.float32)
    _, candidates = jax.lax.top_k(-D32, k + CANDIDATE_MARGIN)
    rounded = jnp.take_along_axis(D32, candidates, axis=1)
    complete = jnp.all(rounded[:, -1] > rounded[:, k - 1])
    exact = jnp.take_along_axis(D, candidates, axis=1)
    return jax.lax.cond(
        complete,
        lambda: _k_smallest(exact, candidates, k),
        lambda: _k_smallest(D, columns, k),
    )


def _k_smallest(values: Array, index: Array, k: int) -> Array:
    """The ``index`` entries of the k smallest ``values`` per row, ties to the smaller index."""
    return jax.lax.sort((values, index), dimension=1, num_keys=2)[1][:, :k]


def _unit_rows(A: Array) -> Array:
    norm = jnp.linalg.norm(A, axis=1, keepdims=True)
    return A / jnp.where(norm > 0, norm, 1.0)


@dataclass(frozen=True)
class KNN:
    """Mean of the k nearest training profiles.

    k: a positive int, or "tune" to pick k from ``k_grid`` by leave-one-out MSE
        on the training set (grid entries above N - 1 are skipped; the state
        records the grid actually scored).
    metric: "euclidean" or "cosine".
    """

    k: int | Literal["tune"] = 1
    metric: Metric = "euclidean"
    k_grid: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 30, 50)

    #: Zero columns change no distance (Euclidean) and no angle (cosine).
    zero_padding_invariant = True

    def __post_init__(self) -> None:
        if self.metric not in ("euclidean", "cosine"):
            raise InputError(f"KNN metric must be 'euclidean' or 'cosine', not {self.metric!r}")
        if self.k != "tune" and not (_is_int(self.k) and self.k >= 1):
            raise InputError(f"KNN k must be a positive int or 'tune', not {self.k!r}")
        if self.k != "tune":
            object.__setattr__(self, "k", int(self.k))
        grid = tuple(self.k_grid)
        if not grid or not all(_is_int(k) and k >= 1 for k in grid):
            raise InputError(f"KNN k_grid must be non-empty positive ints, not {self.k_grid!r}")
        # Sorted and unique so that equal grids hash equal and ties pick the smaller k.
        object.__setattr__(self, "k_grid", tuple(sorted(set(int(k) for k in grid))))

    @property
    def name(self) -> str:
        k = "tuned" if self.k == "tune" else str(self.k)
        return f"knn_k{k}" + ("_cosine" if self.metric == "cosine" else "")

    def fit(self, Z_train: ArrayLike, Y_train: ArrayLike) -> KNNState:
        """Z_train (N, Q), Y_train (N, G) -> KNNState (tunes k if asked)."""
        return _fit(self, *self._checked(Z_train, Y_train), False)[0]

    def fit_predict_folds(self, folds: Sequence[Fold], starts: Sequence[Record | None] | None = None) -> list[FoldFit]:
        """Each fold fitted, predicted, and its leave-one-out predictions (``heldout``) taken from
        the fit's own neighbour pass (one distance matrix and one top-k serve the tuning, and one
        pass of neighbour averages of Yc and Yc^2 serves s2_g and the held-out predictions);
        ``starts`` are not used (a fit depends on its fold's data only)."""
        out = []
        for fold in folds:
            Z, Y = self._checked(fold.Z_train, fold.Y_train)
            state, heldout = _fit(self, Z, Y, self._kmax(Z.shape[0]) <= Z.shape[0] - 1)
            out.append(FoldFit(self.predict(state, fold.Z_test), self.record(state), heldout))
        return out

    def _checked(self, Z_train: ArrayLike, Y_train: ArrayLike) -> tuple[Array, Array]:
        """Z (N, Q), Y (N, G) checked (:func:`~gpllm.models.base.check_fit_inputs`) against k."""
        tune = self.k == "tune"
        Z, Y = check_fit_inputs(Z_train, Y_train, min_rows=2 if tune else 1)
        n = Z.shape[0]
        if self.k != "tune" and self.k > n:
            raise InputError(f"KNN k={self.k} exceeds the {n} training perturbations")
        if tune and min(self.k_grid) > n - 1:
            raise InputError(f"KNN k_grid {self.k_grid} has no k <= N - 1 = {n - 1} for leave-one-out")
        return Z, Y

    def record(self, state: KNNState) -> dict:
        """The k in use: ``{"k": k}``."""
        return scalar_record(state)

    def predict(self, state: KNNState, Z_test: ArrayLike) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean (M, G), var (M, G))."""
        Z = check_predict_inputs(state.Z.shape[1], Z_test, dtype=state.Z.dtype)
        return predict_rows(lambda rows: _predict(self, state, rows), Z)

    def heldout(self, state: KNNState, Z_train, Y_train) -> HeldOut | None:
        """Each training point predicted from its k nearest other training points
        (None when k exceeds N - 1)."""
        if self._kmax(state.Z.shape[0]) > state.Z.shape[0] - 1:
            return None
        return _heldout(self, state)

    def _kmax(self, n_train: int) -> int:
        """Static number of neighbours to fetch; the state's k <= this."""
        if self.k == "tune":
            return max(self._grid(n_train))
        return self.k

    def _grid(self, n_train: int) -> tuple[int, ...]:
        return tuple(k for k in self.k_grid if k <= n_train - 1)


def _is_int(k: object) -> bool:
    return isinstance(k, (int, np.integer)) and not isinstance(k, bool)


@partial(jax.jit, static_argnums=(0, 3))
def _fit(model: KNN, Z: Array, Y: Array, with_heldout: bool) -> tuple[KNNState, HeldOut | None]:
    """The state, and with ``with_heldout`` the leave-one-out predictions (needs kmax <= N - 1),
    from one neighbour pass over the training points."""
    if model.metric == "cosine":
        Z = _unit_rows(Z)
    n = Z.shape[0]
    kmax = model._kmax(n)
    others = _nearest_others(Z, model.metric, kmax) if kmax <= n - 1 else None
    if model.k != "tune":
        k = jnp.asarray(model.k, jnp.int32)
        grid, mse = jnp.zeros((0,), jnp.int32), jnp.zeros((0,), Y.dtype)
    else:
        assert others is not None, "tuning needs k <= N - 1 (KNN._checked refuses a grid beyond it)"
        grid = jnp.asarray(model._grid(n), jnp.int32)
        mse = _loo_mse(others, Y, kmax)[grid - 1]
        k = grid[jnp.argmin(mse)]  # argmin takes the first minimum: the smallest such k
    if others is not None:
        # One pass over the neighbours serves s2_g and the held-out moments: y_i's leave-one-out
        # residual is yc_i - mean_c_i (centring moves both sides alike).
        moments = _centred_averages(others, k, Y)
        residual = (Y - Y.mean(axis=0)) - moments[0]
        loo_var = jnp.mean(residual * residual, axis=0)
    else:  # k = N: the prediction is the training mean, whose error variance is s2 (1 + 1/N)
        loo_var = jnp.var(Y, axis=0, ddof=1) * (1.0 + 1.0 / n) if n > 1 else jnp.zeros(Y.shape[1], Y.dtype)
    state = KNNState(Z, Y, k, grid, mse, jnp.maximum(loo_var, variance_floor(Y)))
    if not with_heldout or others is None:
        return state, None
    pred = _moments_prediction(state, *moments)
    assert pred.var is not None, "kNN's moments always carry a variance"
    return state, HeldOut(Y - pred.mean, pred.var)


def _others(Z: Array, metric: Metric) -> Array:
    """Distances between the rows of Z (N, Q), the diagonal infinite: a point is not its own neighbour."""
    D = pairwise_distances(Z, Z, metric)
    return D.at[jnp.diag_indices(Z.shape[0])].set(jnp.inf)


def _nearest_others(Z: Array, metric: Metric, kmax: int) -> Array:
    """(N, kmax) each training point's kmax nearest other training points, nearest first."""
    return nearest(_others(Z, metric), kmax)


def _averages(idx: Array, k: Array, *Xs: Array) -> tuple[Array, ...]:
    """1/k sum_{j<k} X[idx[:, j]] (M, G) for each X (N, G): the average over the first k of each
    row's neighbours ``idx`` (M, kmax) among the N training points (k <= kmax, may be traced).

    Summed over the k gathered rows, O(M k G), rather than as a product W @ X with a dense (M, N)
    matrix of weights 1/k, O(M N G): the same sum up to rounding, ~10x faster at N = 1,400.
    With one neighbour it is X's nearest row, exactly.
    """
    if idx.shape[1] == 1:
        return tuple(X[idx[:, 0]] for X in Xs)
    weight = 1.0 / k.astype(Xs[0].dtype)

    def add_neighbour(j, sums):
        rows = idx[:, j]
        return tuple(total + weight * X[rows] for total, X in zip(sums, Xs))

    zeros = tuple(jnp.zeros((idx.shape[0], X.shape[1]), X.dtype) for X in Xs)
    return jax.lax.fori_loop(0, k, add_neighbour, zeros)


def loo_mse_all_k(Z: Array, Y: Array, metric: Metric, kmax: int) -> Array:
    """Leave-one-out MSE of kNN for every k = 1..kmax at once -> (kmax,) (:func:`_loo_mse`)."""
    return _loo_mse(_nearest_others(Z, metric, kmax), Y, kmax)


def _loo_mse(idx: Array, Y: Array, kmax: int) -> Array:
    """Leave-one-out MSE of kNN for every k = 1..kmax, given each point's nearest others idx (N, kmax).

    One distance matrix with an infinite diagonal (a point is not its own
    neighbour) and one top_k give each point's kmax neighbours n_i1, n_i2, ...
    With the Gram matrix S = Yc Yc^T (Yc centred, which leaves residuals
    unchanged and limits cancellation), the squared LOO error for k is
    |y_i - 1/k sum_{j<=k} y_nij|^2
        = S_ii - 2/k sum_{j<=k} S_i,nij + 1/k^2 sum_{j,l<=k} S_nij,nil,
    and prefix sums over j (and j, l) give all k from the same gathers:
    O(N^2 (Q + G) + N kmax^2) instead of a pass per k.
    """
    n, g = Y.shape
    Yc = Y - Y.mean(axis=0)
    S = Yc @ Yc.T
    cross = jnp.cumsum(jnp.take_along_axis(S, idx, axis=1), axis=1)  # (N, kmax)
    block = S[idx[:, :, None], idx[:, None, :]]  # (N, kmax, kmax)
    # sum_{j,l<=k} block_jl for every k, as two products with the prefix mask
    # (XLA's CPU cumsum over this block is ~20x slower than the matmuls).
    prefix = jnp.tril(jnp.ones((kmax, kmax), Y.dtype))  # prefix[k, j] = j <= k
    within = jnp.einsum("kj,njk->nk", prefix, block @ prefix.T)  # (N, kmax)
    ks = jnp.arange(1, kmax + 1, dtype=Y.dtype)
    sq_err = jnp.diag(S)[:, None] - 2.0 * cross / ks + within / ks**2
    return jnp.maximum(sq_err.mean(axis=0), 0.0) / g


@partial(jax.jit, static_argnums=0)
def _predict(model: KNN, state: KNNState, Z: Array) -> Prediction:
    if model.metric == "cosine":
        Z = _unit_rows(Z)
    return _neighbour_prediction(state, pairwise_distances(Z, state.Z, model.metric), model._kmax(state.Z.shape[0]))


@partial(jax.jit, static_argnums=0)
def _heldout(model: KNN, state: KNNState) -> HeldOut:
    pred = _neighbour_prediction(state, _others(state.Z, model.metric), model._kmax(state.Z.shape[0]))
    assert pred.var is not None  # kNN always predicts a variance
    return HeldOut(state.Y - pred.mean, pred.var)


def _neighbour_prediction(state: KNNState, D: Array, kmax: int) -> Prediction:
    """Mean and variance (module docstring) of the k nearest training profiles per row of D (M, N)."""
    return _moments_prediction(state, *_centred_averages(nearest(D, kmax), state.k, state.Y))


def _centred_averages(idx: Array, k: Array, Y: Array) -> tuple[Array, Array]:
    """The averages of Yc and Yc^2 (M, G) over the first k of each row's neighbours idx (M, kmax),
    Yc = Y - y_bar, Y (N, G) the training profiles.

    Moments about the training mean, which keeps the cancellation in E[y^2] - E[y]^2 to the
    neighbours' spread rather than the expression level."""
    Yc = Y - Y.mean(axis=0)
    mean_c, mean_sq = _averages(idx, k, Yc, Yc * Yc)
    return mean_c, mean_sq


def _moments_prediction(state: KNNState, mean_c: Array, mean_sq: Array) -> Prediction:
    """The prediction from the neighbours' averages of Yc and Yc^2 (M, G), Yc = Y - y_bar."""
    k = state.k.astype(state.Y.dtype)
    spread = jnp.maximum(mean_sq - mean_c * mean_c, 0.0) * (k / jnp.maximum(k - 1.0, 1.0))
    factor = jnp.mean(spread * (1.0 + 1.0 / k) / state.loo_var, axis=1)
    factor = jnp.where(state.k > 1, factor, 1.0)
    var = jnp.maximum(state.loo_var * factor[:, None], variance_floor(state.Y))
    return Prediction(mean_c + state.Y.mean(axis=0), var)

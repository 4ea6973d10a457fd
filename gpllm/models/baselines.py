"""The paper's simple baselines (Sec. 3.1), which ignore the embedding.

- RandomPerturbation: the profile of a training perturbation drawn at random.
- NonControlMean: the mean of the training profiles (the "non-control mean").
- Control: the control profile itself, i.e. a zero predicted delta.

They still validate Z like every model (a swapped or malformed embedding fails
the same way everywhere), so each state keeps the training mean of Z, z_mean
(Q,), whose length is what ``predict`` checks Z_test against.

Predictive variance, per gene (G,), the same for every test point since the
embedding is ignored: an estimate of the expected squared error of the
prediction for a new profile y* exchangeable with the N training profiles,
with s2_g = the per-gene variance of the training profiles (ddof 1):

- NonControlMean: Var(y* - y_bar) = s2 (1 + 1/N).
- RandomPerturbation: Var(y* - y_j) = 2 s2 (two independent draws). It is the
  spread of the error over draws: given the drawn j, y* is still centred on
  the population mean, not on y_j.
- Control: E[(y* - ctrl)^2] = s2 + (mean - ctrl)^2, estimated unbiasedly by the
  mean squared training delta 1/N sum_i (y_i - ctrl)^2 (the zero-delta model has no
  spread of its own: its error is the whole delta).

Each also has the ``heldout`` hook (:mod:`gpllm.models.base`): the same
estimates made without point i, in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gpllm.checks import is_concrete
from gpllm.errors import InputError, ShapeError
from gpllm.models.base import (
    Array,
    HeldOut,
    Prediction,
    as_checked_array,
    check_fit_inputs,
    check_predict_inputs,
    variance_floor,
)


class RandomPerturbationState(NamedTuple):
    """Y: (N, G) training profiles; key: the PRNG key the draws derive from; z_mean: (Q,);
    var: (G,) predictive variance 2 s2."""

    Y: Array
    key: Array
    z_mean: Array
    var: Array


class MeanState(NamedTuple):
    """profile: (G,) the profile predicted for every test point; z_mean: (Q,);
    var: (G,) predictive variance per gene."""

    profile: Array
    z_mean: Array
    var: Array


class _LeaveOneOut(NamedTuple):
    """Per training point i, the mean (N, G) and variance (ddof 1, (N, G)) of the others."""

    mean: Array
    var: Array


def _leave_one_out(Y: Array) -> _LeaveOneOut:
    """Moments of Y (N, G) without each row, in closed form (N >= 3):
    mean_{-i} = (N y_bar - y_i) / (N - 1),  SS_{-i} = SS - N / (N - 1) (y_i - y_bar)^2."""
    n = Y.shape[0]
    d = Y - Y.mean(axis=0)
    ss = jnp.sum(d * d, axis=0)
    return _LeaveOneOut(Y - d * (n / (n - 1.0)), jnp.maximum(ss - d * d * (n / (n - 1.0)), 0.0) / (n - 2.0))


def _spread(Y: Array) -> Array:
    """s2 (G,): the per-gene variance (ddof 1) of the training profiles Y (N, G), N >= 2."""
    return jnp.var(Y, axis=0, ddof=1)


def _floored(var: Array, Y: Array) -> Array:
    return jnp.maximum(var, variance_floor(Y))


#: Training points the baselines' ``heldout`` needs: a variance of the N - 1 others.
_MIN_HELDOUT = 3


@dataclass(frozen=True)
class RandomPerturbation:
    """Predict, for each test point, a uniformly drawn training profile.

    Draws are independent across test points (with replacement) and
    reproducible: test row i uses ``fold_in(key(seed), i)``, so a row's draw
    does not depend on how many rows are predicted with it. Use a different
    seed per split for independent draws across splits.
    """

    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise InputError(f"RandomPerturbation seed must be an int, not {self.seed!r}")

    @property
    def name(self) -> str:
        return "random_perturbation"

    def fit(self, Z_train: ArrayLike, Y_train: ArrayLike) -> RandomPerturbationState:
        """Z_train (N, Q), Y_train (N, G), N >= 2 -> the training profiles, the key, 2 s2."""
        return _compiled_fit(self, *check_fit_inputs(Z_train, Y_train, min_rows=2))

    def _fit(self, Z: Array, Y: Array) -> RandomPerturbationState:
        return RandomPerturbationState(Y, jax.random.key(self.seed), Z.mean(axis=0), _floored(2.0 * _spread(Y), Y))

    def predict(self, state: RandomPerturbationState, Z_test: ArrayLike) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean (M, G): row i = Y[j_i], j_i ~ U{0..N-1}; var (M, G) 2 s2),
        taken on the host (no program per M)."""
        Z = check_predict_inputs(state.z_mean.shape[0], Z_test, dtype=state.Y.dtype)
        Y = np.asarray(state.Y)
        return Prediction(Y[_draws(state.key, Z.shape[0], Y.shape[0])], _rows_of(state.var, Z.shape[0]))

    def heldout(self, state: RandomPerturbationState, Z_train, Y_train) -> HeldOut | None:
        """Point i predicted by another training profile drawn at random (its own key stream,
        apart from the test rows'), with variance 2 s2_{-i}; None for N < 3."""
        Y = jnp.asarray(state.Y)
        n = Y.shape[0]
        if n < _MIN_HELDOUT:
            return None
        others = _draws(jax.random.fold_in(state.key, _HELDOUT_STREAM), n, n - 1)
        index = others + (others >= np.arange(n))  # uniform over j != i (integers, on the host)
        return _compiled_heldout(self, state, Y, index)

    def _heldout(self, state: RandomPerturbationState, Y: Array, index: Array) -> HeldOut:
        return HeldOut(Y - Y[index], _floored(2.0 * _leave_one_out(Y).var, Y))


#: Folded into the key for the held-out draws, so that they never reuse a test row's draw.
_HELDOUT_STREAM = 2**31 - 1


#: Draws are made for a multiple of this many rows and the first ones kept, so that the
#: test folds of a screen (354 and 355 rows) share one compiled program.
DRAW_BUCKET = 64


def _draws(key: Array, m: int, n: int) -> np.ndarray:
    """(m,) draws j_i ~ U{0..n-1}, row i's from ``fold_in(key, i)`` (:func:`_draw_indices`), kept
    on the host (no slicing program per m)."""
    rows = -(-m // DRAW_BUCKET) * DRAW_BUCKET
    return np.asarray(_draw_indices(key, np.arange(rows, dtype=jax.dtypes.canonicalize_dtype(np.int64)), n))[:m]


@jax.jit
def _draw_indices(key: Array, rows: Array, n: Array) -> Array:
    """j_i = randint(fold_in(key, i), 0, n) for each test row i: row i's draw is its own.

    n is traced, not static, so one program serves every training size (compiling
    the threefry draws costs time per shape on CPU; see the docs' Benchmarks page).
    """
    return jax.vmap(lambda i: jax.random.randint(jax.random.fold_in(key, i), (), 0, n))(rows)


@dataclass(frozen=True)
class NonControlMean:
    """Predict the mean training profile, y_bar = 1/N sum_i y_i, everywhere."""

    @property
    def name(self) -> str:
        return "nonctrl_mean"

    def fit(self, Z_train: ArrayLike, Y_train: ArrayLike) -> MeanState:
        """Z_train (N, Q), Y_train (N, G), N >= 2 -> MeanState(profile = mean of Y_train,
        var = s2 (1 + 1/N))."""
        return _compiled_fit(self, *check_fit_inputs(Z_train, Y_train, min_rows=2))

    def _fit(self, Z: Array, Y: Array) -> MeanState:
        return MeanState(Y.mean(axis=0), Z.mean(axis=0), _floored(_spread(Y) * (1.0 + 1.0 / Y.shape[0]), Y))

    def predict(self, state: MeanState, Z_test: ArrayLike) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean (M, G), every row the training mean; var (M, G))."""
        return _predict_constant(state, Z_test)

    def heldout(self, state: MeanState, Z_train, Y_train) -> HeldOut | None:
        """y_i - mean_{-i}, variance s2_{-i} (1 + 1/(N - 1)); None for N < 3."""
        Y = jnp.asarray(Y_train, state.profile.dtype)
        n = Y.shape[0]
        if n < _MIN_HELDOUT:
            return None
        return _compiled_heldout(self, state, Y, None)

    def _heldout(self, state: MeanState, Y: Array, index: None) -> HeldOut:
        loo = _leave_one_out(Y)
        return HeldOut(Y - loo.mean, _floored(loo.var * (1.0 + 1.0 / (Y.shape[0] - 1)), Y))


@dataclass(frozen=True, eq=False)
class Control:
    """Predict the control profile ctrl (G,) everywhere: a zero delta.

    Holds ctrl as a read-only float array; equality and hashing go by its
    values, so the model stays a valid (hashable) configuration.
    """

    ctrl: Any
    _key: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        arr = np.array(as_checked_array(self.ctrl, "ctrl", ndim=1))
        if arr.shape[0] < 1:
            raise ShapeError("ctrl (0,) is empty: it needs one value per gene")
        arr.flags.writeable = False
        object.__setattr__(self, "ctrl", arr)
        object.__setattr__(self, "_key", (arr.shape, arr.dtype.str, arr.tobytes()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Control) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    @property
    def name(self) -> str:
        return "control"

    def fit(self, Z_train: ArrayLike, Y_train: ArrayLike) -> MeanState:
        """Check Z_train (N, Q), Y_train (N, G) with G = len(ctrl) -> MeanState(profile = ctrl,
        var = 1/N sum_i (y_i - ctrl)^2)."""
        Z, Y = check_fit_inputs(Z_train, Y_train)
        if Y.shape[1] != self.ctrl.shape[0]:
            raise ShapeError(f"Y_train {tuple(Y.shape)} has {Y.shape[1]} genes but ctrl has {self.ctrl.shape[0]}")
        return _compiled_fit(self, Z, Y)

    def _fit(self, Z: Array, Y: Array) -> MeanState:
        ctrl = jnp.asarray(self.ctrl, Y.dtype)
        return MeanState(ctrl, Z.mean(axis=0), _floored(jnp.mean((Y - ctrl) ** 2, axis=0), Y))

    def predict(self, state: MeanState, Z_test: ArrayLike) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean (M, G), every row ctrl; var (M, G))."""
        return _predict_constant(state, Z_test)

    def heldout(self, state: MeanState, Z_train, Y_train) -> HeldOut | None:
        """y_i - ctrl, variance = the mean squared delta of the other N - 1; None for N < 2."""
        Y = jnp.asarray(Y_train, state.profile.dtype)
        n = Y.shape[0]
        if n < 2:
            return None
        return _compiled_heldout(self, state, Y, None)

    def _heldout(self, state: MeanState, Y: Array, index: None) -> HeldOut:
        sq = (Y - state.profile) ** 2
        return HeldOut(Y - state.profile, _floored((jnp.sum(sq, axis=0) - sq) / (Y.shape[0] - 1.0), Y))


Baseline = RandomPerturbation | NonControlMean | Control


# One compiled program per training size for each of fit and heldout: run op by op, the
# baselines' few dozen small operations were a compile each per size (~1 s cold per chunk).
@partial(jax.jit, static_argnums=0)
def _compiled_fit(model: Baseline, Z: Array, Y: Array) -> RandomPerturbationState | MeanState:
    """``model._fit`` on checked Z (N, Q), Y (N, G)."""
    return model._fit(Z, Y)


@partial(jax.jit, static_argnums=0)
def _compiled_heldout(model: Baseline, state, Y: Array, index: Any) -> HeldOut:
    """``model._heldout`` on its training profiles Y (N, G); index (N,) the held-out draws, or
    None for the baselines that draw none (each ``_heldout`` types its own)."""
    return model._heldout(state, Y, index)


def _rows_of(values: Array, m: int) -> Array | np.ndarray:
    """(G,) values repeated as m rows (M, G): a read-only view on the host, with no program per M;
    under a transformation (a fit vmapped over folds) the traced broadcast."""
    if not is_concrete(values):
        return jnp.broadcast_to(values, (m, values.shape[0]))
    return np.broadcast_to(np.asarray(values), (m, values.shape[0]))


def _predict_constant(state: MeanState, Z_test: ArrayLike) -> Prediction:
    Z = check_predict_inputs(state.z_mean.shape[0], Z_test, dtype=state.profile.dtype)
    return Prediction(_rows_of(state.profile, Z.shape[0]), _rows_of(state.var, Z.shape[0]))

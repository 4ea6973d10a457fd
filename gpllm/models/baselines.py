"""The paper's simple baselines (Sec. 3.1), which ignore the embedding.

- RandomPerturbation: the profile of a training perturbation drawn at random.
- NonControlMean: the mean of the training profiles (the "non-control mean").
- Control: the control profile itself, i.e. a zero predicted delta.

They still validate Z like every model (a swapped or malformed embedding fails
the same way everywhere), so each state keeps the training mean of Z, z_mean
(Q,), whose length is what ``predict`` checks Z_test against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gpllm.errors import InputError, ShapeError
from gpllm.models.base import (
    Array,
    Prediction,
    as_checked_array,
    check_fit_inputs,
    check_predict_inputs,
)


class RandomPerturbationState(NamedTuple):
    """Y: (N, G) training profiles; key: the PRNG key the draws derive from; z_mean: (Q,)."""

    Y: Array
    key: Array
    z_mean: Array


class MeanState(NamedTuple):
    """profile: (G,) the profile predicted for every test point; z_mean: (Q,)."""

    profile: Array
    z_mean: Array


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

    def fit(self, Z_train: Array, Y_train: Array) -> RandomPerturbationState:
        """Z_train (N, Q), Y_train (N, G) -> the training profiles and the key."""
        Z, Y = check_fit_inputs(Z_train, Y_train)
        return RandomPerturbationState(Y, jax.random.key(self.seed), Z.mean(axis=0))

    def predict(self, state: RandomPerturbationState, Z_test: Array) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean (M, G): row i = Y[j_i], j_i ~ U{0..N-1}; var None)."""
        Z = check_predict_inputs(state.z_mean.shape[0], Z_test, dtype=state.Y.dtype)
        index = _draw_indices(state.key, jnp.arange(Z.shape[0]), state.Y.shape[0])
        return Prediction(jnp.asarray(state.Y)[index], None)


@jax.jit
def _draw_indices(key: Array, rows: Array, n: Array) -> Array:
    """j_i = randint(fold_in(key, i), 0, n) for each test row i: row i's draw is its own.

    n is traced, not static, so one program serves every training size (compiling
    the threefry draws takes ~0.7 s per shape on CPU).
    """
    return jax.vmap(lambda i: jax.random.randint(jax.random.fold_in(key, i), (), 0, n))(rows)


@dataclass(frozen=True)
class NonControlMean:
    """Predict the mean training profile, y_bar = 1/N sum_i y_i, everywhere."""

    @property
    def name(self) -> str:
        return "nonctrl_mean"

    def fit(self, Z_train: Array, Y_train: Array) -> MeanState:
        """Z_train (N, Q), Y_train (N, G) -> MeanState(profile = mean of Y_train)."""
        Z, Y = check_fit_inputs(Z_train, Y_train)
        return MeanState(Y.mean(axis=0), Z.mean(axis=0))

    def predict(self, state: MeanState, Z_test: Array) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean (M, G), every row the training mean; var None)."""
        return _predict_constant(state, Z_test)


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

    def fit(self, Z_train: Array, Y_train: Array) -> MeanState:
        """Check Z_train (N, Q), Y_train (N, G) with G = len(ctrl) -> MeanState(profile = ctrl)."""
        Z, Y = check_fit_inputs(Z_train, Y_train)
        if Y.shape[1] != self.ctrl.shape[0]:
            raise ShapeError(
                f"Y_train {tuple(Y.shape)} has {Y.shape[1]} genes but ctrl has {self.ctrl.shape[0]}"
            )
        return MeanState(jnp.asarray(self.ctrl, Y.dtype), Z.mean(axis=0))

    def predict(self, state: MeanState, Z_test: Array) -> Prediction:
        """Z_test (M, Q) -> Prediction(mean (M, G), every row ctrl; var None)."""
        return _predict_constant(state, Z_test)


def _predict_constant(state: MeanState, Z_test: Array) -> Prediction:
    Z = check_predict_inputs(state.z_mean.shape[0], Z_test, dtype=state.profile.dtype)
    return Prediction(jnp.broadcast_to(state.profile, (Z.shape[0], state.profile.shape[0])), None)

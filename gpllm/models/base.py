"""The one interface every perturbation model follows, and its input checks.

A model is a frozen dataclass holding configuration only (hashable, so it can be
a static argument of ``jax.jit``). ``fit`` maps training arrays to a NamedTuple
state of arrays (a pytree); ``predict`` maps a state and test embeddings to a
:class:`Prediction`. Both are pure::

    state = model.fit(Z_train, Y_train)        # Z (N, Q), Y (N, G) expression
    pred = model.predict(state, Z_test)        # Z_test (M, Q)
    pred.mean                                  # (M, G)
    pred.var                                   # (M,) or None

The checks below run in Python before anything is compiled, so a bad array
fails with a message naming it and its shape rather than as a NaN or an XLA
error. They skip value checks (not shape checks) on tracers, so a ``fit`` can
still be vmapped over folds.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gpllm.checks import check_finite, check_rank, is_concrete
from gpllm.errors import InputError, ShapeError

Array = jax.Array


class Prediction(NamedTuple):
    """What every model predicts for M test perturbations.

    mean: (M, G) predicted expression profiles.
    var: (M,) predictive variance per test point, shared by all G genes, or
        None for models without one.
    """

    mean: Array
    var: Array | None


@runtime_checkable
class Model(Protocol):
    """A perturbation model: configuration in, pure ``fit`` / ``predict`` out."""

    name: str

    def fit(self, Z_train: Array, Y_train: Array) -> Any:
        """Z_train (N, Q), Y_train (N, G) -> a NamedTuple state (a pytree of arrays)."""
        ...

    def predict(self, state: Any, Z_test: Array) -> Prediction:
        """Z_test (M, Q) -> Prediction with mean (M, G)."""
        ...


def _describe(name: str, shape: tuple[int, ...]) -> str:
    return f"{name} {tuple(shape)}"


def as_checked_array(
    x: ArrayLike,
    name: str,
    *,
    ndim: int,
    dtype: Any = None,
    integer: bool = False,
) -> Array:
    """``x`` as a jax array of rank ``ndim``, all finite; otherwise a clear error.

    Floating arrays keep their precision (float32 stays float32); integer or
    boolean input becomes the default float dtype unless ``integer``; ``dtype``
    forces a dtype. Raises ShapeError (wrong rank), InputError (not a real
    number type: strings, complex) and NonFiniteError (NaN/inf, with a count
    and the first bad position). Rank and finiteness use :mod:`gpllm.checks`,
    the checks the GP core runs too. Tracers get shape checks only.
    """
    if is_concrete(x):
        try:
            x = jnp.asarray(x)
        except (TypeError, ValueError) as err:
            raise InputError(f"{name} is not a numeric array: {err}") from None
    check_rank(name, x, ndim)
    kind = jnp.dtype(x.dtype).kind
    if kind not in "biuf":
        raise InputError(f"{_describe(name, x.shape)} has non-numeric dtype {x.dtype}")
    if integer:
        if kind not in "iu":
            raise InputError(f"{_describe(name, x.shape)} must hold integers, not {x.dtype}")
        return x
    if dtype is not None:
        x = x.astype(dtype)
    elif kind != "f":
        x = x.astype(jnp.result_type(float))
    check_finite(_describe(name, x.shape), x)
    return x


def check_fit_inputs(
    Z: ArrayLike,
    Y: ArrayLike,
    *,
    min_rows: int = 1,
    names: tuple[str, str] = ("Z_train", "Y_train"),
) -> tuple[Array, Array]:
    """Validate training inputs Z (N, Q), Y (N, G); return both in one float dtype.

    Raises ShapeError for a wrong rank, an empty column axis or N mismatch,
    InputError for fewer than ``min_rows`` rows (models that need a
    leave-one-out pass ask for 2), NonFiniteError for NaN/inf. The common dtype
    is the promotion of both (float32 + float32 stays float32; integers become
    the default float).
    """
    z_name, y_name = names
    Z = as_checked_array(Z, z_name, ndim=2)
    Y = as_checked_array(Y, y_name, ndim=2)
    if Z.shape[0] != Y.shape[0]:
        raise ShapeError(
            f"{_describe(z_name, Z.shape)} and {_describe(y_name, Y.shape)} "
            "must have the same number of rows (perturbations)"
        )
    for name, arr, axis_name in ((z_name, Z, "embedding dimension Q"), (y_name, Y, "genes G")):
        if arr.shape[1] < 1:
            raise ShapeError(f"{_describe(name, arr.shape)} has no columns ({axis_name} = 0)")
    if Z.shape[0] < min_rows:
        raise InputError(
            f"{_describe(z_name, Z.shape)}: need at least {min_rows} training "
            f"perturbation(s), got {Z.shape[0]}"
        )
    dtype = jnp.result_type(Z.dtype, Y.dtype)
    return Z.astype(dtype), Y.astype(dtype)


def check_predict_inputs(
    state_dim: int,
    Z: ArrayLike,
    *,
    name: str = "Z_test",
    dtype: Any = None,
) -> Array:
    """Validate test embeddings Z (M, Q) against the fitted embedding dimension Q.

    Raises ShapeError for a wrong rank or Q != ``state_dim``, InputError for
    M = 0, NonFiniteError for NaN/inf. ``dtype`` (the fitted state's) casts Z.
    """
    Z = as_checked_array(Z, name, ndim=2, dtype=dtype)
    if Z.shape[1] != state_dim:
        raise ShapeError(
            f"{_describe(name, Z.shape)} has embedding dimension {Z.shape[1]}, "
            f"but the model was fitted with {state_dim}"
        )
    if Z.shape[0] < 1:
        raise InputError(f"{_describe(name, Z.shape)} has no test perturbations")
    return Z

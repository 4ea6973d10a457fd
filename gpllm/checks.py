"""Input checks that run on concrete arrays before anything is compiled.

Each raises a :mod:`gpllm.errors` exception naming the argument, its shape and
what is wrong. Under a user's own ``jax.jit`` the arrays are tracers; the
value checks (NaN, positivity) are then skipped and only shapes are checked,
since values do not exist yet.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gpllm.errors import InputError, NonFiniteError, ShapeError
from gpllm.precision import warn_if_truncated


def is_concrete(x) -> bool:
    """True unless ``x`` is a tracer inside a transformation."""
    return not isinstance(x, jax.core.Tracer)


def as_float_array(name: str, x, dtype=None):
    """``x`` as a floating JAX array; integer/bool inputs become the default float."""
    arr = x if isinstance(x, jax.Array) else np.asarray(x)
    warn_if_truncated(name, arr)
    if arr.dtype == object:
        raise InputError(f"{name} must be numeric, got an object array")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = np.asarray(arr, dtype=dtype or jax.numpy.result_type(float))
    elif dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return jax.numpy.asarray(arr)


def check_finite(name: str, x) -> None:
    """NonFiniteError if ``x`` holds NaN or inf, with the count and first position."""
    if not is_concrete(x):
        return
    values = np.asarray(x)
    bad = ~np.isfinite(values)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteError(f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf); first at index {first}")


def check_rank(name: str, x, ndim: int) -> None:
    """ShapeError unless ``x`` has exactly ``ndim`` dimensions."""
    if x.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")


def check_training_arrays(Z, Y, *, min_rows: int = 2, batched: bool = False) -> None:
    """Z (N, Q) and Y (N, D) (or (B, N, ...) if ``batched``): rank, rows, size, finiteness."""
    lead = 1 if batched else 0
    check_rank("Z", Z, 2 + lead)
    check_rank("Y", Y, 2 + lead)
    if Z.shape[: lead + 1] != Y.shape[: lead + 1]:
        raise ShapeError(f"Z and Y must have the same number of rows: Z {tuple(Z.shape)} vs Y {tuple(Y.shape)}")
    n = Z.shape[lead]
    if n < min_rows:
        raise InputError(f"need at least {min_rows} training rows, got N={n}")
    if Z.shape[-1] == 0 or Y.shape[-1] == 0:
        raise ShapeError(f"Z and Y need at least one column: Z {tuple(Z.shape)}, Y {tuple(Y.shape)}")
    check_finite("Z", Z)
    check_finite("Y", Y)


def check_new_inputs(Z_new, n_features: int) -> None:
    """Test inputs (M, Q) with the training Q, finite."""
    check_rank("Z_new", Z_new, 2)
    if Z_new.shape[1] != n_features:
        raise ShapeError(f"Z_new has {Z_new.shape[1]} columns but the model was trained on {n_features}")
    check_finite("Z_new", Z_new)


def describe(name: str, shape: tuple[int, ...]) -> str:
    return f"{name} {tuple(shape)}"


def as_checked_array(
    x: ArrayLike,
    name: str,
    *,
    ndim: int,
    dtype: Any = None,
    integer: bool = False,
) -> jax.Array:
    """``x`` as a jax array of rank ``ndim``, all finite; otherwise a clear error.

    Floating arrays keep their precision (float32 stays float32); integer or
    boolean input becomes the default float dtype unless ``integer``; ``dtype``
    forces a dtype. Raises ShapeError (wrong rank), InputError (not a real
    number type: strings, complex) and NonFiniteError (NaN/inf, with a count
    and the first bad position). Rank and finiteness use :mod:`gpllm.checks`,
    the checks above. Tracers get shape checks only.
    """
    if is_concrete(x):
        warn_if_truncated(name, x)
        try:
            x = jnp.asarray(x)
        except (TypeError, ValueError) as err:
            raise InputError(f"{name} is not a numeric array: {err}") from None
    check_rank(name, x, ndim)
    kind = jnp.dtype(x.dtype).kind
    if kind not in "biuf":
        raise InputError(f"{describe(name, x.shape)} has non-numeric dtype {x.dtype}")
    if integer:
        if kind not in "iu":
            raise InputError(f"{describe(name, x.shape)} must hold integers, not {x.dtype}")
        return x
    if dtype is not None:
        x = x.astype(dtype)
    elif kind != "f":
        x = x.astype(jnp.result_type(float))
    check_finite(describe(name, x.shape), x)
    return x

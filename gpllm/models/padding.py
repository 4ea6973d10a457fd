"""Test rows padded to a multiple of a bucket before a compiled prediction, so that the folds of a
screen (354 and 355 test perturbations) share one program instead of compiling one each.

Only for predictions made row by row (kNN's neighbours, ridge's z W + b): a padded row, a copy of
the last real one, changes no other row, and is dropped on the host.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from gpllm.models.base import Prediction

#: Test rows are padded to a multiple of this (the scoring in :mod:`gpllm.evaluate.rows` pads to it too).
ROW_BUCKET = 32


def pad_rows(x: np.ndarray | jax.Array, bucket: int = ROW_BUCKET) -> np.ndarray:
    """x (M, ...) with its last row repeated up to the next multiple of ``bucket`` rows."""
    x = np.asarray(x)
    rows = -(-len(x) // bucket) * bucket
    return x if len(x) == rows else np.pad(x, ((0, rows - len(x)),) + ((0, 0),) * (x.ndim - 1), mode="edge")


#: Byte alignment at which XLA's CPU client takes a host buffer passed by DLPack as it is, uncopied.
DEVICE_ALIGNMENT = 64


def take_rows_on_device(x: np.ndarray, rows: np.ndarray) -> jax.Array:
    """x[rows] (len(rows), ...) as a device array holding the only copy of those rows.

    The rows are gathered once, into a host buffer aligned to :data:`DEVICE_ALIGNMENT`, which the
    CPU device then wraps by DLPack without copying it (an accelerator copies it to its own
    memory, and the host buffer is dropped): scoring a 9,771 x 8,000 float64 test block holds
    one 0.6 GB copy of it, not one on the host and another per program it is passed to.
    """
    buffer = _aligned_empty((len(rows), *x.shape[1:]), x.dtype)
    np.take(x, rows, axis=0, out=buffer)
    if jax.default_backend() != "cpu":  # DLPack would give a CPU array; the accelerator takes a copy
        return jax.device_put(buffer)
    return jax.dlpack.from_dlpack(buffer)


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts at a multiple of :data:`DEVICE_ALIGNMENT` bytes."""
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(n_bytes + DEVICE_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % DEVICE_ALIGNMENT
    return raw[start : start + n_bytes].view(dtype).reshape(shape)


def predict_rows(predict: Callable[[np.ndarray], Prediction], Z: jax.Array) -> Prediction:
    """``predict`` (a row-wise compiled prediction) on Z (M, Q) padded to :data:`ROW_BUCKET` rows;
    mean and var of the M real rows, as host arrays."""
    m = Z.shape[0]
    mean, var = jax.device_get(predict(pad_rows(Z)))
    return Prediction(mean[:m], None if var is None else var[:m])

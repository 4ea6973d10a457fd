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


def predict_rows(predict: Callable[[np.ndarray], Prediction], Z: jax.Array) -> Prediction:
    """``predict`` (a row-wise compiled prediction) on Z (M, Q) padded to :data:`ROW_BUCKET` rows;
    mean and var of the M real rows, as host arrays."""
    m = Z.shape[0]
    mean, var = jax.device_get(predict(pad_rows(Z)))
    return Prediction(mean[:m], None if var is None else var[:m])

"""The one protocol every perturbation model follows, and its input checks.

A model holds configuration only (a frozen dataclass, hashable, so it can be a
static argument of ``jax.jit``). Two methods are required; both are pure::

    state = model.fit(Z_train, Y_train)        # Z (N, Q) embeddings, Y (N, G) expression
    pred = model.predict(state, Z_test)        # Z_test (M, Q)
    pred.mean                                  # (M, G)
    pred.var                                   # (M,), (M, G) or None

Optional hooks, each used when present (the functions below supply the default):

- ``record(state) -> dict``: what the fit chose, JSON-ready (a GP's
  hyperparameters, kNN's k, ridge's penalty). The one serialisation: result
  parts, fitted-model files and warm starts all store it.
- ``restore(record, Z_train, Y_train) -> state``: the state a record
  describes (default: fit again, for deterministic models).
- ``fit_predict_folds(folds, starts) -> list[FoldFit]``: several CV folds at
  once (e.g. one compiled, batched GP fit); ``starts`` holds each fold's
  record from the next smaller training size, a warm start.
- ``batches_folds``: True when ``fit_predict_folds`` gains from seeing all
  of a chunk's folds in one call (one compiled program over them, as the GP's).
  Otherwise the sweep passes one fold at a time and scores it before building
  the next, so that a chunk holds one fold's copies and fit, not all of them.
- ``zero_padding_invariant``: True when appending zero columns to Z changes
  nothing, so that the sweep may pad embeddings of different widths to share
  compiled programs.
- ``peak_bytes(n_train, n_genes, width, n_folds) -> int``: the memory its
  ``fit_predict_folds`` peaks at on ``n_folds`` folds of ``n_train`` points
  (inputs ``width`` wide, ``n_genes`` outputs), so that the sweep can refuse
  or space out what would not fit before it starts (default 0: not estimated).
- ``heldout(state, Z_train, Y_train) -> HeldOut | None``: each training
  point's leave-one-out residual and the predictive variance the model gives
  it, with the fit's hyperparameters held fixed (None where that is
  undefined, e.g. too few points). The sweep rescales a model's variance by
  s = mean(r^2 / v) over them, a recalibration that sees the training fold
  only; a model without the hook is reported as not recalibrated.

The evaluation layer knows models only through this protocol, so a model in a
user's own file joins ``gpllm reproduce`` as ``module:attr``.

The checks below run in Python before anything is compiled, so a bad array
fails with a message naming it and its shape rather than as a NaN or an XLA
error. They skip value checks (not shape checks) on tracers, so a ``fit`` can
still be vmapped over folds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gpllm.checks import as_checked_array, check_finite
from gpllm.checks import describe as _describe
from gpllm.errors import GPLLMError, InputError, ShapeError

Array = jax.Array
Record = Mapping[str, Any]


class Prediction(NamedTuple):
    """What every model predicts for M test perturbations.

    mean: (M, G) predicted expression profiles.
    var: the variance of a measured profile around ``mean`` (a Gaussian
        predictive distribution per gene), broadcastable to (M, G): (M,) one
        value per test point shared by all genes (the paper's GP's), or (M, G)
        one per gene (ridge's, kNN's, a GP's with per-gene output scales); > 0.
        None for models without one. :func:`variance_per_gene` gives the (M, G) form.
    """

    mean: Array | np.ndarray
    var: Array | np.ndarray | None


def variance_per_gene(prediction: Prediction) -> Array | None:
    """``prediction.var`` as (M, G) (a shared (M,) variance repeated over genes), or None."""
    if prediction.var is None:
        return None
    var = jnp.asarray(prediction.var)
    return jnp.broadcast_to(var[:, None] if var.ndim == 1 else var, jnp.shape(prediction.mean))


def variance_floor(Y: Array) -> Array:
    """The smallest predictive variance a model reports for training profiles Y (N, G).

    A gene constant over the training set (or over a kNN neighbourhood) has a
    spread of 0; a point mass would give an infinite NLL to any other value, so
    variances are clamped at eps * (mean squared Y + 1): far below any real spread,
    and > 0 even when every Y is 0.
    """
    return jnp.finfo(Y.dtype).eps * (jnp.mean(Y * Y) + 1.0)


class HeldOut(NamedTuple):
    """Leave-one-out predictions on the N training points (the ``heldout`` hook).

    residual: (N, G) y_i - mu_{-i}, mu_{-i} the prediction at z_i of the model
        fitted without point i (hyperparameters held at the fitted values).
    var: broadcastable to (N, G): (N,) or (N, G), the variance that fit gives y_i.
    """

    residual: Array | np.ndarray
    var: Array | np.ndarray


@runtime_checkable
class Model(Protocol):
    """A perturbation model: configuration in, pure ``fit`` / ``predict`` out."""

    def fit(self, Z_train: ArrayLike, Y_train: ArrayLike) -> Any:
        """Z_train (N, Q), Y_train (N, G) -> a state (a pytree of arrays)."""
        ...

    def predict(self, state: Any, Z_test: ArrayLike) -> Prediction:
        """Z_test (M, Q) -> Prediction with mean (M, G)."""
        ...


class Fold(NamedTuple):
    """One CV fold's arrays: Z_train (N, Q), Y_train (N, G), Z_test (M, Q)."""

    Z_train: np.ndarray
    Y_train: np.ndarray
    Z_test: np.ndarray


class FoldFit(NamedTuple):
    """A fold's prediction, the record of what its fit chose (``{}`` if nothing) and its
    leave-one-out predictions on the training fold (None for a model without ``heldout``)."""

    prediction: Prediction
    record: Record
    heldout: HeldOut | None = None


REQUIRED_METHODS = ("fit", "predict")


def check_model(obj: Any, where: str) -> Model:
    """``obj`` if it implements the protocol, else InputError naming the missing method(s)."""
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(obj, m, None))]
    if missing:
        raise InputError(
            f"{where}: {obj!r} does not implement the gpllm Model protocol: missing method(s) "
            f"{', '.join(missing)} (see gpllm.models.base)"
        )
    return obj


def _plain_json(record: Record, model: Model) -> dict:
    """A record as plain JSON (tuples become lists); InputError if it is not JSON-serialisable."""
    try:
        return json.loads(json.dumps(dict(record)))
    except (TypeError, ValueError) as err:
        raise InputError(f"{model!r} recorded something that is not JSON: {err}") from None


def record_of(model: Model, state: Any) -> dict:
    """``model.record(state)`` as plain JSON if the model has that hook, else ``{}``."""
    hook: Callable[..., Any] | None = getattr(model, "record", None)
    return _plain_json(hook(state), model) if callable(hook) else {}


def restore(model: Model, record: Record, Z_train, Y_train) -> Any:
    """The state ``record`` describes: ``model.restore`` if present, else a fresh fit."""
    hook: Callable[..., Any] | None = getattr(model, "restore", None)
    return hook(record, Z_train, Y_train) if callable(hook) else model.fit(Z_train, Y_train)


def fit_predict_folds(
    model: Model, folds: Sequence[Fold], starts: Sequence[Record | None] | None = None
) -> list[FoldFit]:
    """Fit and predict every fold: the model's own ``fit_predict_folds`` if it has one
    (batched, warm-started from ``starts``), else ``fit`` and ``predict`` per fold."""
    hook: Callable[..., Any] | None = getattr(model, "fit_predict_folds", None)
    if callable(hook):
        fits = list(hook(folds, starts))
        if len(fits) != len(folds):
            raise InputError(f"{model!r}.fit_predict_folds returned {len(fits)} results for {len(folds)} folds")
        fits = [FoldFit(fit.prediction, _plain_json(fit.record, model), fit.heldout) for fit in fits]
    else:
        fits = []
        for fold in folds:
            state = model.fit(fold.Z_train, fold.Y_train)
            heldout = heldout_of(model, state, fold.Z_train, fold.Y_train)
            fits.append(FoldFit(model.predict(state, fold.Z_test), record_of(model, state), heldout))
    for index, (fold, fit) in enumerate(zip(folds, fits)):
        try:
            check_fold_fit(fit, fold)
        except GPLLMError as err:
            err.datasets = (index,)  # the fold at fault, for the caller's message
            raise
    return fits


def check_fold_fit(fit: FoldFit, fold: Fold) -> FoldFit:
    """``fit`` if its outputs are what the protocol promises for ``fold`` (M test and N
    training rows, G genes), else the error naming the first that is not:

    - prediction mean (M, G), finite; var None, or (M,) or (M, G), finite and > 0;
    - held-out residual (N, G), finite; its var (N,) or (N, G), finite and > 0.

    Scoring pads a fold's rows, so a mean with a row too many would otherwise pass unnoticed.
    """
    m, n, g = len(fold.Z_test), len(fold.Z_train), np.shape(fold.Y_train)[1]
    prediction, heldout = fit.prediction, fit.heldout
    # (what, the array, which of the fold's perturbations its rows are, how many, whether a variance)
    outputs = [("predicted mean", prediction.mean, "test", m, False)]
    if prediction.var is not None:
        outputs.append(("predicted variance", prediction.var, "test", m, True))
    if heldout is not None:
        outputs.append(("held-out residual", heldout.residual, "training", n, False))
        outputs.append(("held-out variance", heldout.var, "training", n, True))
    for what, x, side, rows, is_variance in outputs:
        x = np.asarray(x)
        shapes = ((rows,), (rows, g)) if is_variance else ((rows, g),)
        if x.shape not in shapes:
            needed = " or ".join(map(str, shapes))
            raise ShapeError(
                f"its {what} has shape {x.shape}; the fold's {rows} {side} perturbations x {g} genes need {needed}"
            )
        check_finite(f"its {what} {x.shape}", x)
        if is_variance and not np.all(x > 0):
            raise InputError(f"its {what} {x.shape} must be > 0; {int(np.sum(x <= 0))} value(s) are not")
    return fit


def heldout_of(model: Model, state: Any, Z_train, Y_train) -> HeldOut | None:
    """``model.heldout(state, Z_train, Y_train)`` if the model has that hook, else None."""
    hook: Callable[..., Any] | None = getattr(model, "heldout", None)
    return hook(state, Z_train, Y_train) if callable(hook) else None


def peak_bytes_of(model: Model, n_train: int, n_genes: int, width: int, n_folds: int) -> int:
    """``model.peak_bytes(n_train, n_genes, width, n_folds)`` if the model has that hook, else 0."""
    hook: Callable[..., Any] | None = getattr(model, "peak_bytes", None)
    return int(hook(n_train, n_genes, width, n_folds)) if callable(hook) else 0


def folds_per_call(model: Model, n_folds: int) -> int:
    """How many of a chunk's ``n_folds`` folds one ``fit_predict_folds`` call gets: all of them
    where the model ``batches_folds``, else one."""
    return n_folds if getattr(model, "batches_folds", False) else 1


def zero_padding_invariant(model: Model) -> bool:
    """Whether zero columns appended to Z leave ``model`` unchanged (default False)."""
    return bool(getattr(model, "zero_padding_invariant", False))


def scalar_record(state: Any) -> dict:
    """A NamedTuple state's numeric scalars (kNN's k, ridge's lam), JSON-ready."""
    return {
        name: np.asarray(x).item()
        for name, x in state._asdict().items()
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, np.number) and np.ndim(x) == 0
    }


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
            f"{_describe(z_name, Z.shape)}: need at least {min_rows} training perturbation(s), got {Z.shape[0]}"
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

"""Which perturbations to measure next: one small interface, five built-ins, and a user's own.

An acquisition is any callable

    acquire(design: Design, batch_size: int, key: jax.Array) -> indices into the pool, (batch_size,)

given the GP fitted to the perturbations measured so far (:class:`Design`)
and a PRNG key for its own randomness. It sees only the pool (never the
held-out test set) and no unmeasured response, as read-only copies: writing into
``design.measured`` fails instead of changing what the run has measured. Its
batch is checked by :func:`check_batch` against the run's own record before
anything is measured: integers, the right count, inside the pool, no repeats,
nothing already measured (:func:`acquire_checked` does both, and turns the
acquisition's own exception into one :class:`~gpllm.errors.WorkerError` naming it).

Built-ins (``BUILTIN``):

- ``random``: uniform over the unmeasured pool.
- ``max_variance``: the GP's largest predictive variance, the batch chosen
  greedily, each point conditioned on the ones before (:mod:`.greedy`).
- ``variance_reduction``: the largest drop of the total predictive variance
  over the unmeasured pool, greedily likewise.
- ``coreset``: greedy k-centre on the embeddings (the point farthest from
  everything measured or chosen), as in GeneDisco's core-set.
- ``ucb_effect``: an upper confidence bound on the predicted response size
  (mean |delta| over the prediction's top-20 genes + beta x its standard
  deviation), for the strong knockouts; the batch is chosen greedily with the
  variance conditioned likewise (GP-BUCB).

A user's own loads from ``module:attr`` or ``file.py:attr`` (an instance or a
function; a class is built with no arguments). One that never looks at the GP
may say so with an attribute ``needs_gp = False``: its design's ``state`` is
then None, and the run skips refactorising the previous round's GP for it.
"""

from __future__ import annotations

import dataclasses
import inspect
import traceback
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from gpllm import plugins
from gpllm.active import greedy
from gpllm.errors import GPLLMError, InputError, WorkerError
from gpllm.gp.distance import squared_distance
from gpllm.models.gp import GPModel, GPState


class Design(NamedTuple):
    """What an acquisition may look at: the GP fitted to the measured pool points.

    model: the GP (its ``kernel``); state: fitted on the measured points (its
    ``posterior`` and ``offset``; None for an acquisition with ``needs_gp =
    False``); Z_pool: (P, Q) embeddings of the pool; measured: (n,) int
    indices into the pool already measured; ctrl: (G,) the control profile,
    for acquisitions that target the response size.
    """

    model: GPModel
    state: GPState | None
    Z_pool: np.ndarray
    measured: np.ndarray
    ctrl: np.ndarray

    @property
    def available(self) -> np.ndarray:
        """(P,) bool: the pool points not yet measured."""
        free = np.ones(len(self.Z_pool), bool)
        free[self.measured] = False
        return free


@runtime_checkable
class Acquisition(Protocol):
    def __call__(self, design: Design, batch_size: int, key: jax.Array) -> Any:
        """(batch_size,) indices into the pool of the perturbations to measure next."""
        ...


@dataclasses.dataclass(frozen=True)
class Random:
    """Uniform over the unmeasured pool, without replacement."""

    needs_gp = False

    def __call__(self, design: Design, batch_size: int, key: jax.Array) -> np.ndarray:
        free = np.flatnonzero(design.available)
        return free[np.asarray(jax.random.choice(key, len(free), (batch_size,), replace=False))]


@dataclasses.dataclass(frozen=True)
class GreedyGP:
    """A batch chosen greedily by a GP score, conditioning on each chosen point (:mod:`.greedy`).

    score: "variance" (maximum predictive variance), "reduction" (total
    variance over the unmeasured pool) or "ucb" (predicted response size
    + beta standard deviations, the size averaged over each prediction's
    ``top`` largest |delta| genes).
    """

    score: greedy.Score
    beta: float = 1.0
    top: int = 20

    def __post_init__(self):
        if self.score not in greedy.SCORES:
            raise InputError(f"GreedyGP score must be one of {greedy.SCORES}, got {self.score!r}")

    def __call__(self, design: Design, batch_size: int, key: jax.Array) -> np.ndarray:
        kernel, post = design.model.kernel, design.state.posterior
        S, noise = greedy.pool_covariance(kernel, post, jnp.asarray(design.Z_pool))
        effect = None
        if self.score == "ucb":
            top = min(self.top, design.ctrl.shape[0])
            effect = greedy.predicted_effect(
                kernel,
                post,
                design.state.offset,
                jnp.asarray(design.Z_pool),
                jnp.asarray(design.ctrl, post.Z.dtype),
                top=top,
            )
        chosen, _ = greedy.greedy_batch(
            S,
            noise,
            jnp.asarray(design.available),
            score=self.score,
            batch_size=batch_size,
            effect=effect,
            beta=self.beta,
        )
        return np.asarray(chosen)


@dataclasses.dataclass(frozen=True)
class CoreSet:
    """Greedy k-centre on the embeddings: each pick is the unmeasured point whose distance to
    the nearest measured (or already picked) point is largest (Sener & Savarese 2018)."""

    needs_gp = False

    def __call__(self, design: Design, batch_size: int, key: jax.Array) -> np.ndarray:
        Z = np.asarray(design.Z_pool, np.float64)
        nearest = np.full(len(Z), np.inf)
        if len(design.measured):
            nearest = np.asarray(squared_distance(jnp.asarray(Z), jnp.asarray(Z[design.measured]))).min(axis=1)
        free = design.available
        chosen = []
        for _ in range(batch_size):
            j = int(np.argmax(np.where(free, nearest, -np.inf)))
            chosen.append(j)
            free[j] = False
            nearest = np.minimum(nearest, np.sum((Z - Z[j]) ** 2, axis=1))
        return np.asarray(chosen)


BUILTIN: dict[str, Acquisition] = {
    "random": Random(),
    "max_variance": GreedyGP("variance"),
    "variance_reduction": GreedyGP("reduction"),
    "coreset": CoreSet(),
    "ucb_effect": GreedyGP("ucb"),
}


def load_acquisition(name: str, where: str = "acquisition", base: Path | None = None) -> Acquisition:
    """A built-in by name, or a user's from ``module:attr`` / ``file.py:attr`` (relative to ``base``).

    InputError for an unknown name, a reference that does not resolve, or an
    object that cannot be called as ``acquire(design, batch_size, key)``.
    """
    if name in BUILTIN:
        return BUILTIN[name]
    if not plugins.is_reference(name):
        raise InputError(
            f"{where}: unknown acquisition {name!r}; built-in: {sorted(BUILTIN)}, or a "
            "'module:attr' / 'file.py:attr' reference to your own"
        )
    obj = plugins.load_reference(name, where, base)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as err:
            raise InputError(f"{where}: {name} is a class that cannot be built with no arguments ({err})") from err
    if not callable(obj):
        raise InputError(f"{where}: {name} is a {type(obj).__name__}, not a callable acquire(design, batch_size, key)")
    try:
        inspect.signature(obj).bind(None, 0, None)
    except TypeError as err:
        raise InputError(f"{where}: {name} cannot be called as acquire(design, batch_size, key) ({err})") from None
    except ValueError:  # a builtin without a signature: the call itself will tell
        pass
    return obj


def _read_only_copy(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, copy=True)
    copy.setflags(write=False)
    return copy


def acquire_checked(acquire: Acquisition, design: Design, batch_size: int, key: jax.Array, name: str) -> np.ndarray:
    """``acquire``'s batch for ``design``, checked (:func:`check_batch`) against ``design``
    as the run holds it; the acquisition gets read-only copies of the design's arrays.

    A failure inside the acquisition (an exception, ``sys.exit``) is a WorkerError naming
    it, with the traceback in ``details``; gpllm's own errors and Ctrl-C pass through."""
    shown = design._replace(**{f: _read_only_copy(getattr(design, f)) for f in ("Z_pool", "measured", "ctrl")})
    try:
        batch = acquire(shown, batch_size, key)
    except GPLLMError:
        raise
    except (Exception, SystemExit) as err:
        raise WorkerError(f"acquisition {name!r} raised {type(err).__name__}: {err}", traceback.format_exc()) from None
    return check_batch(batch, design, batch_size, name)


def check_batch(batch: Any, design: Design, batch_size: int, name: str) -> np.ndarray:
    """``batch`` as (batch_size,) int64 pool indices; InputError naming the acquisition and
    the problem: not integers, the wrong count, outside the pool (the held-out test set is
    never offered), repeated, or already measured."""
    where = f"acquisition {name!r}"
    try:
        array = np.asarray(batch)
    except Exception as err:
        raise InputError(f"{where} returned {type(batch).__name__}, not an array of pool indices ({err})") from None
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{where} returned {array.dtype} values {_preview(array)}, not integer pool indices")
    if array.shape != (batch_size,):
        raise InputError(f"{where} returned shape {array.shape}; a batch of {batch_size} indices was asked for")
    n_pool = len(design.Z_pool)
    outside = array[(array < 0) | (array >= n_pool)]
    if outside.size:
        raise InputError(
            f"{where} returned indices outside the pool [0, {n_pool}): {_preview(outside)} "
            "(the held-out test perturbations are not in the pool)"
        )
    values, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{where} returned repeated indices: {_preview(values[counts > 1])}")
    again = np.intersect1d(array, design.measured)
    if again.size:
        raise InputError(
            f"{where} returned {again.size} perturbation(s) already measured: pool indices {_preview(again)}"
        )
    return array.astype(np.int64)


def _preview(values: np.ndarray, n: int = 5) -> str:
    shown = ", ".join(str(v) for v in np.ravel(values)[:n])
    return f"[{shown}{', ...' if np.size(values) > n else ''}]"

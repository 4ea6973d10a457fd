"""Each parameter declares its constraint; optimisers only ever see unconstrained values.

A kernel's ``constraints()`` returns a pytree shaped like its parameters whose
leaves are :class:`Constraint` objects; a constraint placed above a subtree
applies to every leaf under it (so a kernel whose parameters are all
positive returns just ``positive``, the default). Four constraints cover the
usual cases:

- ``positive``  value = softplus(raw) > 0       variances, lengthscales (default)
- ``real``      value = raw                      offsets, phases, projection matrices
- ``Bounded(lo, hi)``  value = lo + (hi - lo) sigmoid(raw), in (lo, hi)
- ``fixed``     value = raw, and never optimised

softplus rather than exp: it is linear for large raw values, so optimisers take
sensible steps on lengthscales spanning orders of magnitude, and it does not
underflow to exactly 0 the way exp drives a noise variance.

Kernels see constrained *values*; ``GPParams`` and every optimiser hold the
unconstrained *raw* pytree. :func:`constrain` and :func:`unconstrain` convert,
:func:`check_values` names any value its constraint forbids (:func:`check_start`
any starting value, allowed on a bound), and
:func:`split_trainable` / :func:`merge_trainable` keep fixed leaves out of the
optimiser's pytree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gpllm.checks import is_concrete
from gpllm.errors import InputError

Params = Any  # a pytree of arrays


class Constraint:
    """How one parameter's value relates to the unconstrained raw number optimised.

    Subclasses are frozen dataclasses (hashable, so kernels holding them stay
    valid static arguments of ``jax.jit``) with ``forward`` (raw -> value),
    ``inverse`` (value -> raw) and ``violation`` (why a value is not allowed, or None).
    """

    trainable: bool = True

    def forward(self, raw: ArrayLike) -> jax.Array:
        raise NotImplementedError

    def inverse(self, value: ArrayLike) -> jax.Array:
        raise NotImplementedError

    def violation(self, value: np.ndarray) -> str | None:
        """None if every entry of ``value`` is allowed, else what is wrong with it."""
        return None if np.all(np.isfinite(value)) else "is not finite"

    def start_violation(self, value: np.ndarray, dtype) -> str | None:
        """As :meth:`violation`, for a starting value computed in ``dtype`` (a kernel's
        ``init``); :class:`Bounded` lets it sit on a bound, which :meth:`inverse` moves inside."""
        return self.violation(value)


@dataclasses.dataclass(frozen=True)
class Positive(Constraint):
    """value = softplus(raw) > 0."""

    def forward(self, raw):
        return jax.nn.softplus(raw)

    def inverse(self, value):
        # log(e^v - 1), written stably as v + log(1 - e^-v).
        value = jnp.asarray(value)
        return value + jnp.log(-jnp.expm1(-value))

    def violation(self, value):
        if np.any(value <= 0):
            return "must be positive (constraint: positive, value > 0)"
        return None if np.all(np.isfinite(value)) else "is not finite"

    def __repr__(self):
        return "positive"


@dataclasses.dataclass(frozen=True)
class Real(Constraint):
    """value = raw: any finite real number (offsets, phases, projection matrices)."""

    def forward(self, raw):
        return jnp.asarray(raw)

    def inverse(self, value):
        return jnp.asarray(value)

    def __repr__(self):
        return "real"


@dataclasses.dataclass(frozen=True)
class Bounded(Constraint):
    """value = low + (high - low) * sigmoid(raw), strictly inside (low, high).

    A starting value on a bound is moved just inside it by :meth:`inverse` (a
    kernel's data-aware default may land there); one beyond a bound is an error
    (:func:`check_start`, which the fits call on ``kernel.init``'s values); values a
    user passes are checked strictly by :func:`check_values`.
    """

    low: float
    high: float

    def __post_init__(self):
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.low < self.high):
            raise InputError(f"Bounded needs finite low < high, got ({self.low}, {self.high})")

    def forward(self, raw):
        return self.low + (self.high - self.low) * jax.nn.sigmoid(raw)

    def inverse(self, value):
        value = jnp.asarray(value)
        eps = jnp.finfo(value.dtype).eps if jnp.issubdtype(value.dtype, jnp.floating) else 1e-7
        unit = jnp.clip((value - self.low) / (self.high - self.low), eps, 1 - eps)
        return jnp.log(unit) - jnp.log1p(-unit)

    def violation(self, value):
        if not np.all(np.isfinite(value)):
            return "is not finite"
        inside = np.all((value > self.low) & (value < self.high))
        return None if inside else f"must lie in ({self.low:g}, {self.high:g}) (constraint: {self!r})"

    def start_violation(self, value, dtype):
        """A start may lie on a bound, or beyond it by the rounding of a value computed in
        ``dtype`` (:data:`START_ROUNDING` units of roundoff of the bound's magnitude), no further."""
        if problem := Constraint.violation(self, value):
            return problem
        dtype = np.dtype(dtype) if np.issubdtype(np.dtype(dtype), np.floating) else np.dtype(np.float64)
        slack = START_ROUNDING * np.finfo(dtype).eps * max(abs(self.low), abs(self.high))
        if np.all((value >= self.low - slack) & (value <= self.high + slack)):
            return None
        return (
            f"lies outside its constraint {self!r}: a starting value may sit on a bound (it is moved "
            "just inside), not beyond it"
        )

    def __repr__(self):
        return f"Bounded({self.low:g}, {self.high:g})"


@dataclasses.dataclass(frozen=True)
class Fixed(Real):
    """value = raw, held at its starting value: never optimised."""

    trainable = False

    def __repr__(self):
        return "fixed"


positive = Positive()
real = Real()
fixed = Fixed()

#: How far beyond a bound a start computed in float32/float64 may lie, in units of roundoff
#: of the bound's magnitude: a few roundings (e.g. ``high`` computed as a sum or a quotient).
START_ROUNDING = 4


def _is_constraint(x) -> bool:
    return isinstance(x, Constraint)


def _over_leaves(fn, constraints, tree):
    """``fn(constraint, leaf, path)`` for every leaf of ``tree``, each leaf taking the
    constraint found at or above it in ``constraints``."""

    def per_subtree(path, constraint, subtree):
        if not _is_constraint(constraint):
            raise InputError(
                f"constraints{jax.tree_util.keystr(path)} is {constraint!r}, not a gpllm Constraint "
                "(positive, real, Bounded(low, high) or fixed)"
            )
        return jax.tree_util.tree_map_with_path(
            lambda sub_path, leaf: fn(constraint, leaf, (*path, *sub_path)), subtree
        )

    try:
        return jax.tree_util.tree_map_with_path(per_subtree, constraints, tree, is_leaf=_is_constraint)
    except InputError:
        raise
    except ValueError as err:  # structures disagree
        raise InputError(f"the parameters do not match the kernel's declared constraints: {err}") from None


def constrain(constraints, raw: Params) -> Params:
    """Values from unconstrained ``raw``: each leaf through its constraint's ``forward``."""
    return _over_leaves(lambda c, leaf, _: c.forward(leaf), constraints, raw)


def unconstrain(constraints, values: Params) -> Params:
    """Raw from constrained ``values`` (no checks; see :func:`check_values`)."""
    return _over_leaves(lambda c, leaf, _: c.inverse(leaf), constraints, values)


def check_values(constraints, values: Params, name: str = "params", *, raw: bool = False) -> None:
    """InputError naming the first value its constraint forbids (e.g.
    ``kernel['lengthscale'] must be positive``), or a structure that does not
    match the declaration; tracers are skipped. ``raw``: the leaves are
    unconstrained, where any finite number is allowed."""
    problem = (lambda c, value: Constraint.violation(c, value)) if raw else (lambda c, value: c.violation(value))
    _raise_first(constraints, values, name, problem)


def check_start(constraints, values: Params, name: str, dtype) -> None:
    """InputError naming the first starting value (constrained, e.g. ``kernel.init``'s) its
    constraint forbids (:meth:`Constraint.start_violation`: unlike :func:`check_values`, a
    value on a bound passes); leaves may carry leading axes (datasets, starts)."""
    _raise_first(constraints, values, name, lambda c, value: c.start_violation(value, dtype))


def _raise_first(constraints, values: Params, name: str, problem_of) -> None:
    """InputError ``{name}{path} = {value} {problem}`` at the first leaf where
    ``problem_of(constraint, float64 value)`` is not None; tracers are skipped."""

    def check(constraint, leaf, path):
        if not is_concrete(leaf):
            return leaf
        problem = problem_of(constraint, np.asarray(leaf, dtype=np.float64))
        if problem:
            raise InputError(f"{name}{jax.tree_util.keystr(tuple(path))} = {_shown(np.asarray(leaf))} {problem}")
        return leaf

    _over_leaves(check, constraints, values)


def _shown(value: np.ndarray) -> str:
    """A value for a message: one number where every entry is the same (a start holds a copy
    per dataset and per noise fraction), the array when small, else its range."""
    if value.size and np.all(value == value.flat[0]):
        return str(value.flat[0])
    if value.size <= 6:
        return str(value)
    return f"{np.min(value):g}..{np.max(value):g} (shape {value.shape})"


def split_trainable(constraints, raw: Params) -> tuple[Params, Params]:
    """(trainable, frozen): the same structure each, with None where the other has a leaf.

    The optimiser sees only ``trainable`` (optax skips None), so a fixed
    parameter is never moved, not even by weight decay.
    """
    trainable = _over_leaves(lambda c, leaf, _: leaf if c.trainable else None, constraints, raw)
    frozen = _over_leaves(lambda c, leaf, _: None if c.trainable else leaf, constraints, raw)
    return trainable, frozen


def merge_trainable(trainable: Params, frozen: Params) -> Params:
    """Inverse of :func:`split_trainable`."""
    return jax.tree.map(lambda t, f: f if t is None else t, trainable, frozen, is_leaf=lambda x: x is None)

"""Maximise Eq. 1 with any optax optimiser, the whole loop compiled as one ``lax.while_loop``.

The loss is the negative LML per matrix entry, -log p(Y|Z) / (N D), so
learning rates and tolerances do not depend on the data size. The optimiser
is any ``optax.GradientTransformation`` (a chain, a schedule, ``optax.lbfgs``
with its line search: it receives ``value``, ``grad`` and ``value_fn`` as
extra arguments), or one of two names:

- ``"lbfgs"`` (default): ``optax.lbfgs()`` with its zoom line search; converges
  in a few dozen iterations at the paper's size.
- ``"adam"``: ``optax.adam(learning_rate)``; cheap steps, many of them.

It sees only the trainable raw leaves (parameters declared ``fixed`` stay out
of its pytree, :mod:`gpllm.gp.parameters`).

Convergence: the gradient norm falls below ``gtol``, or the loss changes by
less than ``ftol * max(1, |loss|)`` for ``FLAT_STEPS`` consecutive iterations,
or ``max_steps`` is reached. Both tolerances are floored at what the dtype can
resolve (ftol at 8 eps, gtol at sqrt(eps)), so a float32 fit stops when its
loss stops moving instead of running to ``max_steps`` after a float64-sized
target. The fit is pure in (Z, Y, params0), so ``jax.vmap`` runs it over a
leading axis of datasets (e.g. CV folds of equal size) in one compiled call.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax import lax

from gpllm.errors import InputError
from gpllm.gp import parameters
from gpllm.gp.kernels import Kernel
from gpllm.gp.objective import (
    GPParams,
    OutputScales,
    Path,
    check_output_scales,
    constraints_of,
    lml,
    params_like,
    prepare_targets,
    start_values_at,
    values_of,
)

OPTIMIZER_NAMES = ("lbfgs", "adam")
PATHS = ("auto", "direct", "gram")


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How :func:`fit_traced` optimises; frozen and hashable (a static argument of ``jax.jit``).

    optimizer: ``"lbfgs"``, ``"adam"`` or any ``optax.GradientTransformation``.
        An optax object is compared by identity: build it once and reuse it, or
        every fit compiles anew.
    max_steps: iteration limit (>= 1). learning_rate: for ``"adam"`` only.
    gtol, ftol: gradient-norm and relative loss-change tolerances (>= 0).
    path: how Y enters Eq. 1 (``"auto"``, ``"direct"``, ``"gram"``; :mod:`objective`).
    output_scales: ``"shared"`` (Eq. 1, the paper's) or ``"per_output"`` (one scale per
        output, profiled out; :mod:`objective`).
    noise_ratio_prior: None (ML-II) or (mean, sd) of a Gaussian prior on log r, the noise
        ratio r = s2 / mean_i k(z_i, z_i): the fit then maximises LML + log p(log r) (MAP).
        Why: ML-II on few points can drive r towards 0, a GP that interpolates its
        training profiles (:func:`log_noise_ratio_prior`).
    """

    optimizer: str | optax.GradientTransformation = "lbfgs"
    max_steps: int = 200
    learning_rate: float = 0.05
    gtol: float = 1e-6
    ftol: float = 1e-10
    path: Path = "auto"
    output_scales: OutputScales = "shared"
    noise_ratio_prior: tuple[float, float] | None = None

    def __post_init__(self):
        opt = self.optimizer
        if isinstance(opt, str):
            if opt not in OPTIMIZER_NAMES:
                raise InputError(
                    f"optimizer must be one of {OPTIMIZER_NAMES} or an optax GradientTransformation, got {opt!r}"
                )
        elif not isinstance(opt, optax.GradientTransformation):
            raise InputError(
                f"optimizer must be one of {OPTIMIZER_NAMES} or an optax GradientTransformation "
                f"(with init and update), got {type(opt).__name__} {opt!r}"
            )
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, (int, np.integer)) or self.max_steps < 1:
            raise InputError(f"max_steps must be an integer >= 1, got {self.max_steps!r}")
        for name in ("learning_rate", "gtol", "ftol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if self.path not in PATHS:
            raise InputError(f"path must be one of {PATHS}, got {self.path!r}")
        if check_output_scales(self.output_scales) and self.path == "gram":
            raise InputError(
                "output_scales='per_output' takes the direct path: use path='auto' or 'direct', not 'gram'"
            )
        if self.noise_ratio_prior is not None:
            prior = tuple(self.noise_ratio_prior)
            if len(prior) != 2 or not all(np.isfinite(prior)) or prior[1] <= 0:
                raise InputError(
                    f"noise_ratio_prior must be (mean, sd) of log r with sd > 0, got {self.noise_ratio_prior!r}"
                )
            object.__setattr__(self, "noise_ratio_prior", (float(prior[0]), float(prior[1])))
        object.__setattr__(self, "max_steps", int(self.max_steps))

    def transformation(self) -> optax.GradientTransformationExtraArgs:
        """The optax transformation, accepting L-BFGS's extra arguments whatever it is."""
        if not isinstance(self.optimizer, str):
            return optax.with_extra_args_support(self.optimizer)
        if self.optimizer == "lbfgs":
            return optax.lbfgs()
        return optax.with_extra_args_support(optax.adam(self.learning_rate))


class FitResult(NamedTuple):
    """Optimised parameters and how the optimiser got there.

    ``trace`` is padded to ``max_steps + 1`` entries so that fits vmap; use
    :meth:`lml_trace` for the steps actually taken. Printing a result shows the
    constrained values, the LML, the steps and convergence, never the padding.
    """

    params: GPParams  # raw (unconstrained) leaves, what optimisers and restarts take
    values: GPParams  # the same, constrained: what the kernel sees (positive variances...)
    lml: jax.Array  # () log p(Y|Z) at the optimum (the profile likelihood with per-output scales)
    jitter: jax.Array  # () jitter the final factorisation needed
    trace: jax.Array  # (max_steps + 1,) objective per entry (LML, + log prior) at each iterate; NaN after the stop
    n_steps: jax.Array  # () iterations taken
    converged: jax.Array  # () bool: a tolerance was met (not just max_steps)

    def lml_trace(self) -> np.ndarray:
        """LML per entry at each iterate taken, without the padding, (n_steps + 1,)."""
        return np.asarray(self.trace)[: int(self.n_steps) + 1]

    def __repr__(self) -> str:
        values = jax.tree.map(_short, {"kernel": self.values.kernel, "noise": self.values.noise})
        return (
            f"FitResult(lml={_short(self.lml)}, n_steps={_short(self.n_steps)}, "
            f"converged={_short(self.converged)}, jitter={_short(self.jitter)}, values={values})"
        )


def _short(x) -> object:
    """A value as a person wants to read it: a number, a short list, or a shape."""
    a = np.asarray(x)
    if a.dtype == bool:
        return a.item() if a.ndim == 0 else a.tolist()
    if a.ndim == 0:
        return float(f"{a.item():.5g}") if a.dtype.kind == "f" else a.item()
    if a.size <= 6:
        return [float(f"{v:.5g}") for v in a.ravel()] if a.dtype.kind == "f" else a.tolist()
    return f"<array {a.shape} {a.dtype}>"


#: Consecutive flat iterations that count as convergence.
FLAT_STEPS = 3

#: Noise fractions of the starting points :func:`initial_params` compares.
NOISE_FRACTIONS = (0.1, 0.5, 0.9)


# Compiled once per kernel and shape: called eagerly (GPModel.fresh_start), its Cholesky's
# lax.cond would otherwise be traced and compiled anew on every call.
@partial(jax.jit, static_argnums=0)
def initial_params(
    kernel: Kernel, Z: jax.Array, Y: jax.Array, targets=None, starts: GPParams | None = None
) -> GPParams:
    """The best of a few data-aware starts by Eq. 1: :func:`init_params` at each of
    ``NOISE_FRACTIONS`` of Y's variance given to the noise (``starts``: their constrained
    values, :func:`start_values_at`, where the caller has them already).

    Why: starting with most variance in the kernel on noisy data, the steepest
    way down shrinks the lengthscale until the kernel couples no two inputs and
    its variance acts as noise, a plateau whose lengthscale gradient vanishes and
    which the optimiser cannot leave. Three LML evaluations pick a start on the
    right side of it.
    """
    targets = prepare_targets(Y) if targets is None else targets
    if starts is None:
        starts = start_values_at(kernel, Z, Y, NOISE_FRACTIONS)
    stacked = parameters.unconstrain(constraints_of(kernel), starts)
    # One likelihood in the program, looped over the starts: three inlined copies of the
    # Cholesky and its jitter retries took three times as long to compile (same arithmetic).
    values = lax.map(lambda p: lml(kernel, p, Z, targets).value, stacked)
    best = jnp.argmax(jnp.where(jnp.isfinite(values), values, -jnp.inf))
    return jax.tree.map(lambda leaf: leaf[best], stacked)


def log_noise_ratio_prior(kernel: Kernel, params: GPParams, Z: jax.Array, prior: tuple[float, float]) -> jax.Array:
    """log N(log r; mean, sd^2) up to a constant, r = s2 / mean_i k(z_i, z_i) for raw ``params``.

    The ratio, not s2 itself: it is what sets how closely the posterior mean follows
    the training outputs, and it does not change when the outputs are rescaled (nor
    with per-output scales, which fix the variances only up to a common factor).
    """
    values = values_of(kernel, params_like(params, Z))
    log_ratio = jnp.log(values.noise) - jnp.log(jnp.mean(kernel.diag(values.kernel, Z)))
    mean, sd = prior
    return -0.5 * ((log_ratio - mean) / sd) ** 2


def _objective(kernel, params, Z, prior, lml_value):
    """What the fit maximises: the LML, plus the log prior on the noise ratio where one is given."""
    if prior is None:
        return lml_value
    return lml_value + log_noise_ratio_prior(kernel, params, Z, prior)


def _holds_line_search_value(state) -> bool:
    """Whether an optax state carries the value and gradient at the current iterate (a
    line search's), so that ``optax.value_and_grad_from_state`` can reuse them."""

    def in_state(path, _) -> bool:
        return isinstance(path[-1], otu.NamedTupleKey)  # not a params dict's key

    try:
        return all(otu.tree_get(state, key, filtering=in_state) is not None for key in ("value", "grad"))
    except KeyError:  # several line searches in one chain: evaluate afresh
        return False


def fit_traced(
    kernel: Kernel,
    Z: jax.Array,
    Y: jax.Array,
    params0: GPParams | None = None,
    options: FitOptions = FitOptions(),
    *,
    starts: GPParams | None = None,
) -> FitResult:
    """The fit as a traceable function (no input checks): jit or vmap it freely.

    Z (N, Q), Y (N, D); ``params0`` (raw) defaults to :func:`initial_params` (from
    ``starts`` where given: see there).
    """
    max_steps, gtol, ftol = options.max_steps, options.gtol, options.ftol
    eps = float(np.finfo(Y.dtype).eps)
    targets = prepare_targets(Y, options.path, options.output_scales)
    if params0 is None:
        params0 = initial_params(kernel, Z, Y, targets, starts)
    params0 = params_like(params0, Z)
    n_entries = Y.shape[0] * Y.shape[1]
    trainable0, frozen = parameters.split_trainable(constraints_of(kernel), params0)

    def loss(trainable):
        # optax's line search works in the default float (float64 under x64); the
        # covariance casts the params to Z's dtype, so float32 fits stay float32.
        params = parameters.merge_trainable(trainable, frozen)
        return (
            -_objective(kernel, params, Z, options.noise_ratio_prior, lml(kernel, params, Z, targets).value) / n_entries
        )

    opt = options.transformation()
    # L-BFGS's line search already evaluated the new iterate (its state holds the
    # value and gradient there): reuse them rather than evaluating again.
    reuses_state = _holds_line_search_value(jax.eval_shape(opt.init, trainable0))
    value_and_grad = optax.value_and_grad_from_state(loss) if reuses_state else jax.value_and_grad(loss)

    trace0 = jnp.full((max_steps + 1,), jnp.nan, dtype=Y.dtype)

    class Carry(NamedTuple):
        params: Any  # the trainable raw leaves
        state: optax.OptState
        step: jax.Array
        previous: jax.Array
        trace: jax.Array
        stop: jax.Array
        converged: jax.Array
        flat_run: jax.Array  # consecutive iterations whose loss change was below ftol

    def body(c: Carry) -> Carry:
        if reuses_state:
            value, grad = value_and_grad(c.params, state=c.state)
        else:
            value, grad = value_and_grad(c.params)
        value = cast(jax.Array, value)  # the traced loss: optax types it as any ArrayLike
        updates, state = opt.update(grad, c.state, c.params, value=value, grad=grad, value_fn=loss)
        params = optax.apply_updates(c.params, updates)
        trace = c.trace.at[c.step].set(-value)
        small_grad = otu.tree_norm(grad) < max(gtol, math.sqrt(eps))
        flat = jnp.abs(value - c.previous) < max(ftol, 8 * eps) * jnp.maximum(1.0, jnp.abs(value))
        # One flat step is not enough: L-BFGS's first steps, before it has any
        # curvature, can be tiny far from the optimum (seen on warm starts).
        flat_run = jnp.where(flat, c.flat_run + 1, 0)
        converged = small_grad | (flat_run >= FLAT_STEPS)
        # A non-finite loss means even the largest jitter failed: stop, keep the last good params.
        bad = ~jnp.isfinite(value)
        params = jax.tree.map(lambda new, old: jnp.where(bad, old, new), params, c.params)
        return Carry(params, state, c.step + 1, value, trace, converged | bad, converged, flat_run)

    def keep_going(c: Carry):
        return (~c.stop) & (c.step < max_steps)

    start = Carry(
        trainable0,
        opt.init(trainable0),
        jnp.zeros((), jnp.int32),
        jnp.asarray(jnp.inf, Y.dtype),
        trace0,
        jnp.zeros((), bool),
        jnp.zeros((), bool),
        jnp.zeros((), jnp.int32),
    )
    final = lax.while_loop(keep_going, body, start)
    params = params_like(parameters.merge_trainable(final.params, frozen), Z)
    final_lml = lml(kernel, params, Z, targets)
    objective = _objective(kernel, params, Z, options.noise_ratio_prior, final_lml.value)
    trace = final.trace.at[final.step].set(objective / n_entries)
    values = values_of(kernel, params)
    return FitResult(params, values, final_lml.value, final_lml.jitter, trace, final.step, final.converged)

"""Maximise Eq. 1 with optax, the whole loop compiled as one ``lax.while_loop``.

The loss is the negative LML per matrix entry, -log p(Y|Z) / (N D), so
learning rates and tolerances do not depend on the data size. Two optimisers:

- ``"lbfgs"`` (default): ``optax.lbfgs`` with its zoom line search; converges
  in a few dozen iterations at the paper's size.
- ``"adam"``: ``optax.adam(learning_rate)``; cheap steps, many of them.

Convergence: the gradient norm falls below ``gtol``, or the loss changes by
less than ``ftol * max(1, |loss|)`` for ``FLAT_STEPS`` consecutive iterations,
or ``max_steps`` is reached. Both tolerances are floored at what the dtype can
resolve (ftol at 8 eps, gtol at sqrt(eps)), so a float32 fit stops when its
loss stops moving instead of running to ``max_steps`` after a float64-sized
target. The loss trace (LML per entry, NaN after the stop) is returned. The
fit is pure in (Z, Y, params0), so ``jax.vmap`` runs it over a leading axis of
datasets (e.g. CV folds of equal size) in one compiled call.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
from jax import lax

from gpllm.gp.kernels import Kernel
from gpllm.gp.objective import GPParams, Path, init_params, lml, params_like, prepare_targets

Optimizer = Literal["lbfgs", "adam"]


class FitResult(NamedTuple):
    """Optimised parameters and how the optimiser got there."""

    params: GPParams
    lml: jax.Array  # () log p(Y|Z) at the optimum
    jitter: jax.Array  # () jitter the final factorisation needed
    trace: jax.Array  # (max_steps + 1,) LML per entry at each iterate; NaN after the stop
    n_steps: jax.Array  # () iterations taken
    converged: jax.Array  # () bool: a tolerance was met (not just max_steps)


def make_optimizer(name: Optimizer, learning_rate: float) -> optax.GradientTransformationExtraArgs:
    """The optax transformation for ``name``; both accept L-BFGS's extra arguments."""
    if name == "lbfgs":
        return optax.lbfgs()
    if name == "adam":
        return optax.with_extra_args_support(optax.adam(learning_rate))
    raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {name!r}")


#: Consecutive flat iterations that count as convergence.
FLAT_STEPS = 3

#: Noise fractions of the starting points :func:`initial_params` compares.
NOISE_FRACTIONS = (0.1, 0.5, 0.9)


def initial_params(kernel: Kernel, Z: jax.Array, Y: jax.Array, targets=None) -> GPParams:
    """The best of a few data-aware starts by Eq. 1: :func:`init_params` at each of
    ``NOISE_FRACTIONS`` of Y's variance given to the noise.

    Why: starting with most variance in the kernel on noisy data, the steepest
    way down shrinks the lengthscale until the kernel couples no two inputs and
    its variance acts as noise, a plateau whose lengthscale gradient vanishes and
    which the optimiser cannot leave. Three LML evaluations pick a start on the
    right side of it.
    """
    targets = prepare_targets(Y) if targets is None else targets
    starts = [init_params(kernel, Z, Y, noise_fraction=f) for f in NOISE_FRACTIONS]
    values = jnp.stack([lml(kernel, p, Z, targets).value for p in starts])
    best = jnp.argmax(jnp.where(jnp.isfinite(values), values, -jnp.inf))
    return jax.tree.map(lambda *leaves: jnp.stack(leaves)[best], *starts)


def fit_traced(
    kernel: Kernel,
    Z: jax.Array,
    Y: jax.Array,
    params0: GPParams | None = None,
    *,
    optimizer: Optimizer = "lbfgs",
    max_steps: int = 200,
    learning_rate: float = 0.05,
    gtol: float = 1e-6,
    ftol: float = 1e-10,
    path: Path = "auto",
) -> FitResult:
    """The fit as a traceable function (no input checks): jit or vmap it freely.

    Z (N, Q), Y (N, D). ``params0`` defaults to :func:`initial_params`.
    """
    eps = float(np.finfo(Y.dtype).eps)
    targets = prepare_targets(Y, path)
    if params0 is None:
        params0 = initial_params(kernel, Z, Y, targets)
    params0 = params_like(params0, Z)
    n_entries = Y.shape[0] * Y.shape[1]

    def loss(params):
        # optax's line search works in the default float (float64 under x64); the
        # covariance casts the params to Z's dtype, so float32 fits stay float32.
        return -lml(kernel, params, Z, targets).value / n_entries

    opt = make_optimizer(optimizer, learning_rate)
    # L-BFGS's line search already evaluated the new iterate: reuse it.
    value_and_grad = optax.value_and_grad_from_state(loss) if optimizer == "lbfgs" else jax.value_and_grad(loss)

    trace0 = jnp.full((max_steps + 1,), jnp.nan, dtype=Y.dtype)

    class Carry(NamedTuple):
        params: GPParams
        state: optax.OptState
        step: jax.Array
        previous: jax.Array
        trace: jax.Array
        stop: jax.Array
        converged: jax.Array
        flat_run: jax.Array  # consecutive iterations whose loss change was below ftol

    def body(c: Carry) -> Carry:
        if optimizer == "lbfgs":
            value, grad = value_and_grad(c.params, state=c.state)
        else:
            value, grad = value_and_grad(c.params)
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
        params0, opt.init(params0), jnp.zeros((), jnp.int32), jnp.asarray(jnp.inf, Y.dtype),
        trace0, jnp.zeros((), bool), jnp.zeros((), bool), jnp.zeros((), jnp.int32),
    )
    final = lax.while_loop(keep_going, body, start)
    final = final._replace(params=params_like(final.params, Z))
    final_lml = lml(kernel, final.params, Z, targets)
    trace = final.trace.at[final.step].set(final_lml.value / n_entries)
    return FitResult(final.params, final_lml.value, final_lml.jitter, trace, final.step, final.converged)

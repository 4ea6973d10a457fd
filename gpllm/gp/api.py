"""The entry points users call: check inputs, then run the jit-compiled core.

Everything here validates concrete inputs *before* compiling (clear
:mod:`gpllm.errors` instead of a traceback from inside XLA), calls a cached
``jax.jit`` of the pure function in :mod:`objective`, :mod:`fit` or
:mod:`posterior`, and turns a failed factorisation into a
:class:`~gpllm.errors.CholeskyError` rather than a silent NaN. The kernel is a
static argument, so each kernel configuration compiles once.
"""

from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from gpllm import checks
from gpllm.errors import CholeskyError, InputError, ShapeError
from gpllm.gp import fit as fit_module
from gpllm.gp import posterior as posterior_module
from gpllm.gp.cholesky import jitter_schedule
from gpllm.gp.kernels import Kernel, Params
from gpllm.gp.memory import check_gp_fits
from gpllm.gp import parameters
from gpllm.gp import sharding
from gpllm.gp.fit import FitOptions
from gpllm.gp.objective import LML, GPParams, Path, Targets, constraints_of, lml, params_shapes, prepare_targets, values_of


def params_from_values(kernel: Kernel, kernel_values: Params, noise: float) -> GPParams:
    """Raw GPParams from constrained values, e.g. ``{"variance": 1.0, "lengthscale": 2.0}``.

    Each value is checked against the constraint ``kernel`` declares for it:
    InputError names the parameter and the constraint it violates, and a
    structure that does not match the kernel's parameters.
    """
    values = GPParams(kernel=jax.tree.map(jnp.asarray, kernel_values), noise=jnp.asarray(noise))
    declared = constraints_of(kernel)
    parameters.check_values(declared, values)
    return parameters.unconstrain(declared, values)


def params_to_values(kernel: Kernel, params: GPParams) -> dict:
    """The constrained values of raw ``params``, as ``{"kernel": ..., "noise": ...}``."""
    values = values_of(kernel, params)
    return {"kernel": values.kernel, "noise": values.noise}


def _raise_if_failed(value, jitter, what: str) -> None:
    if checks.is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
        dtype = jnp.asarray(value).dtype
        largest = jitter_schedule(dtype)[1]
        hint = "check for a vanishing noise variance" + ("" if dtype == jnp.float64 else ", or compute in float64")
        raise CholeskyError(
            f"{what}: K + s2 I is not positive definite even with jitter up to {largest:g} x "
            f"mean(diag) ({dtype}); the kernel or noise is degenerate for these inputs ({hint})"
        )


def _checked_data(Z, Y, batched=False, dtype=None, *, batch_size: int | None = None, mesh=None, what: str = "GP"):
    """Z, Y as float arrays of one dtype, checked; and MemoryLimitError if a GP on them
    (when ``batched``, :func:`_in_flight` datasets at once) would not fit."""
    Z = checks.as_float_array("Z", Z, dtype)
    Y = checks.as_float_array("Y", Y, Z.dtype)
    checks.check_training_arrays(Z, Y, batched=batched)
    if mesh is not None:
        sharding.check_dataset_mesh(mesh)
    at_once = _in_flight(batch_size, Z.shape[0], mesh) if batched else 1
    check_gp_fits(*Y.shape[-2:], Z.shape[-1], Z.dtype, at_once, what=what)
    return Z, Y


def _in_flight(batch_size: int | None, n_datasets: int, mesh) -> int:
    """Datasets whose GPs are in one memory at once: a group of ``batch_size`` of each
    device's share; host (CPU) devices all draw on the machine's memory, so theirs add up."""
    share = n_datasets if mesh is None else sharding.datasets_per_device(n_datasets, mesh)
    group = min(_batch_size(batch_size, share), share)
    if mesh is not None and mesh.devices.flat[0].platform == "cpu":
        return group * mesh.devices.size
    return group


@partial(jax.jit, static_argnums=0)
def _lml_jit(kernel, params, Z, targets) -> LML:
    return lml(kernel, params, Z, targets)


@partial(jax.jit, static_argnums=0)
def _value_and_grad_jit(kernel, params, Z, targets):
    return jax.value_and_grad(lambda p: lml(kernel, p, Z, targets).value)(params)


def log_marginal_likelihood(
    kernel: Kernel, params: GPParams, Z, Y, path: Path = "auto"
) -> LML:
    """Eq. 1 for Z (N, Q), Y (N, D): value and the jitter the Cholesky needed."""
    Z, Y = _checked_data(Z, Y, what="log_marginal_likelihood")
    result = _lml_jit(kernel, params, Z, prepare_targets(Y, path))
    _raise_if_failed(result.value, result.jitter, "log_marginal_likelihood")
    return result


def value_and_grad(kernel: Kernel, params: GPParams, Z, targets: Targets):
    """(LML, d LML / d params) with the hand-written gradient, compiled once per kernel.

    Takes prepared :class:`Targets` so that the gram path's QR is paid once
    per dataset, not per call; this is the function the benchmark times.
    """
    if checks.is_concrete(targets.n_outputs):
        check_gp_fits(Z.shape[0], int(targets.n_outputs), Z.shape[1], Z.dtype, what="value_and_grad")
    value, grad = _value_and_grad_jit(kernel, params, Z, targets)
    _raise_if_failed(value, None, "value_and_grad")
    return value, grad


@partial(jax.jit, static_argnums=(0, 4))
def _fit_jit(kernel, Z, Y, params0, options):
    return fit_module.fit_traced(kernel, Z, Y, params0, options)


def _over_datasets(one, args, batch_size: int, mesh=None):
    """``one`` over the leading axis of ``args``: vmapped in groups of ``batch_size``; with a
    ``mesh``, each device does so on its own share (:func:`gpllm.gp.sharding.over_devices`)."""
    if mesh is not None:
        return sharding.over_devices(partial(_over_datasets, one, batch_size=batch_size), mesh)(args)
    if batch_size >= jax.tree.leaves(args)[0].shape[0]:
        return jax.vmap(one)(args)
    return jax.lax.map(one, args, batch_size=None if batch_size == 1 else batch_size)


@partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _fit_batched_jit(kernel, Z, Y, params0, options, batch_size, mesh):
    one = lambda args: fit_module.fit_traced(kernel, *args, options)
    return _over_datasets(one, (Z, Y, params0), batch_size, mesh)


@partial(jax.jit, static_argnums=(0, 5, 6, 7, 8))
def _fit_predict_batched_jit(kernel, Z, Y, params0, Z_new, options, include_noise, batch_size, mesh):
    def one(args):
        z, y, start, z_new = args
        result = fit_module.fit_traced(kernel, z, y, start, options)
        post = posterior_module.condition(kernel, result.params, z, y)
        return result, posterior_module.predict(kernel, post, z_new, include_noise)

    return _over_datasets(one, (Z, Y, params0, Z_new), batch_size, mesh)


def default_batch_size(n_datasets: int) -> int:
    """How many datasets :func:`fit_batched` vmaps together by default.

    All of them on GPU/TPU. One at a time on CPU: there vmapping turns each
    Cholesky and triangular solve into a batched LAPACK call that fans out
    over XLA's intra-op thread pool, and two such calls running at once can
    each wait for the other's threads forever (seen on a 2-core machine with
    jaxlib 0.10); the cores are already busy inside each solve anyway.
    """
    return n_datasets if jax.default_backend() != "cpu" else 1


def _batch_size(batch_size: int | None, n_datasets: int) -> int:
    """The caller's batch size (>= 1, else InputError), or :func:`default_batch_size`."""
    if batch_size is None:
        return default_batch_size(n_datasets)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _checked_raw(kernel: Kernel, params: GPParams | None, Z, name: str = "params0") -> GPParams | None:
    """Raw ``params`` checked against the kernel's parameters for inputs Z (structure,
    shapes, finiteness); ``Z`` (N, Q) or, for batched params, (B, N, Q)."""
    if params is None:
        return None
    if not isinstance(params, GPParams):
        raise InputError(f"{name} must be raw GPParams (see gp.params_from_values), got {type(params).__name__}")
    parameters.check_values(constraints_of(kernel), params, name, raw=True)
    expected = params_shapes(kernel, *Z.shape[-2:], Z.dtype)
    lead = Z.shape[:-2]
    for (path, leaf), want in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(expected)):
        if tuple(np.shape(leaf)) != (*lead, *want.shape):
            raise ShapeError(
                f"{name}{jax.tree_util.keystr(path)} has shape {tuple(np.shape(leaf))}; the kernel on "
                f"{Z.shape[-1]} input columns needs {(*lead, *want.shape)}"
            )
    return params


class JitterWarning(UserWarning):
    """A fit ended where the Cholesky's jitter, not the noise variance, sets the model."""


def _flag_jitter_dominated(kernel: Kernel, result: fit_module.FitResult, what: str) -> fit_module.FitResult:
    """``converged`` False, with a warning, where the fitted noise variance lies below the
    jitter its factorisation needed: the optimiser then stalled on a surrogate model (the
    noise's gradient vanishes there), e.g. when started at a noise of 1e-30 on repeated inputs."""
    noise = np.asarray(values_of(kernel, result.params).noise)
    stalled = np.asarray(result.jitter) > noise
    if not np.any(stalled):
        return result
    warnings.warn(
        f"{what}: {int(np.sum(stalled))} fit(s) ended with a noise variance (min {float(np.min(noise)):.3g}) "
        f"below the jitter their Cholesky needed (max {float(np.max(result.jitter)):.3g}): the optimiser "
        "stalled where the noise's gradient vanishes; marked not converged. Start from the default "
        "(params0=None) or a larger noise.",
        JitterWarning,
        stacklevel=3,
    )
    return result._replace(converged=jnp.asarray(result.converged) & ~jnp.asarray(stalled))


def _checked_options(options: FitOptions | None) -> FitOptions:
    if options is None:
        return FitOptions()
    if not isinstance(options, FitOptions):
        raise InputError(f"options must be a gp.FitOptions, got {type(options).__name__}")
    return options


def fit(
    kernel: Kernel, Z, Y, params0: GPParams | None = None, options: FitOptions | None = None
) -> fit_module.FitResult:
    """Maximise Eq. 1 for Z (N, Q), Y (N, D) from raw ``params0`` (default: a data-aware
    start); how is :class:`~gpllm.gp.fit.FitOptions` (any optax optimiser)."""
    Z, Y = _checked_data(Z, Y, what="gp.fit")
    result = _fit_jit(kernel, Z, Y, _checked_raw(kernel, params0, Z), _checked_options(options))
    _raise_if_failed(result.lml, result.jitter, "fit")
    return _flag_jitter_dominated(kernel, result, "fit")


def _run_batched(jitted, args: tuple, statics: tuple, batch_size: int | None, mesh):
    """``jitted(*args, *statics, batch_size, mesh)`` over the leading B axis of ``args``.

    With a ``mesh``, the args are first spread over its datasets axis (padded
    to a multiple of its size, :func:`gpllm.gp.sharding.shard_datasets`) and
    the padding's results dropped; ``batch_size`` then counts per device.
    """
    n = jax.tree.leaves(args)[0].shape[0]
    if mesh is None:
        return jitted(*args, *statics, _batch_size(batch_size, n), None)
    share = sharding.datasets_per_device(n, mesh)
    out = jitted(*sharding.shard_datasets(args, mesh), *statics, _batch_size(batch_size, share), mesh)
    return out if jax.tree.leaves(out)[0].shape[0] == n else jax.tree.map(lambda x: x[:n], out)


def fit_batched(
    kernel: Kernel, Z, Y, params0: GPParams | None = None, options: FitOptions | None = None, *,
    batch_size: int | None = None, mesh: jax.sharding.Mesh | None = None,
) -> fit_module.FitResult:
    """One compiled fit over a leading axis: Z (B, N, Q), Y (B, N, D).

    Every dataset must have the same N (e.g. CV folds downsampled to one
    size); each gets its own hyperparameters and convergence. ``batch_size``
    datasets are vmapped together (``lax.map`` runs the groups in turn, still
    in one compiled call); default :func:`default_batch_size`. ``mesh``
    (:func:`gpllm.gp.sharding.dataset_mesh`) spreads the datasets over its
    devices, each fitting its share in groups of ``batch_size``; B need not
    divide the device count (:mod:`gpllm.gp.sharding`).
    """
    Z, Y = _checked_data(Z, Y, batched=True, batch_size=batch_size, mesh=mesh, what="fit_batched")
    args = (Z, Y, _checked_raw(kernel, params0, Z))
    result = _run_batched(partial(_fit_batched_jit, kernel), args, (_checked_options(options),), batch_size, mesh)
    _raise_if_failed(result.lml, result.jitter, "fit_batched")
    return _flag_jitter_dominated(kernel, result, "fit_batched")


def fit_predict_batched(
    kernel: Kernel, Z, Y, Z_new, params0: GPParams | None = None, options: FitOptions | None = None, *,
    include_noise: bool = False, batch_size: int | None = None, mesh: jax.sharding.Mesh | None = None,
) -> tuple[fit_module.FitResult, jax.Array, jax.Array]:
    """:func:`fit_batched`, then each dataset's prediction at its own new inputs, in one compiled call.

    Z (B, N, Q), Y (B, N, D), Z_new (B, M, Q) -> (FitResult with a leading B
    axis, mean (B, M, D), variance (B, M)). One program per shape instead of
    three (fit, condition, predict): on CPU compiling dominates small fits.
    ``batch_size`` and ``mesh`` as in :func:`fit_batched`.
    """
    Z, Y = _checked_data(Z, Y, batched=True, batch_size=batch_size, mesh=mesh, what="fit_predict_batched")
    Z_new = checks.as_float_array("Z_new", Z_new, Z.dtype)
    checks.check_rank("Z_new", Z_new, 3)
    if Z_new.shape[0] != Z.shape[0]:
        raise ShapeError(f"Z_new holds {Z_new.shape[0]} datasets but Z holds {Z.shape[0]}")
    checks.check_new_inputs(Z_new.reshape(-1, Z_new.shape[-1]), Z.shape[-1])
    args = (Z, Y, _checked_raw(kernel, params0, Z), Z_new)
    statics = (_checked_options(options), include_noise)
    result, (mean, var) = _run_batched(partial(_fit_predict_batched_jit, kernel), args, statics, batch_size, mesh)
    _raise_if_failed(result.lml, result.jitter, "fit_predict_batched")
    _raise_if_failed(var, None, "fit_predict_batched (conditioning)")
    return result, mean, var


@partial(jax.jit, static_argnums=0)
def _condition_jit(kernel, params, Z, Y):
    return posterior_module.condition(kernel, params, Z, Y)


def condition(kernel: Kernel, params: GPParams, Z, Y) -> posterior_module.Posterior:
    """Factor once for prediction; Z (N, Q), Y (N, D)."""
    Z, Y = _checked_data(Z, Y, what="condition")
    post = _condition_jit(kernel, _checked_raw(kernel, params, Z, "params"), Z, Y)
    _raise_if_failed(post.L, post.jitter, "condition")
    return post


@partial(jax.jit, static_argnums=(0, 3))
def _predict_jit(kernel, post, Z_new, include_noise):
    return posterior_module.predict(kernel, post, Z_new, include_noise)


def predict(kernel: Kernel, post: posterior_module.Posterior, Z_new, include_noise: bool = False):
    """Posterior mean (M, D) and per-point variance (M,) at Z_new (M, Q)."""
    Z_new = checks.as_float_array("Z_new", Z_new, post.Z.dtype)
    checks.check_new_inputs(Z_new, post.Z.shape[1])
    return _predict_jit(kernel, post, Z_new, include_noise)


@partial(jax.jit, static_argnums=(0, 4, 5))
def _sample_jit(kernel, post, Z_new, key, n_samples, include_noise):
    return posterior_module.sample(kernel, post, Z_new, key, n_samples, include_noise)


def sample(
    kernel: Kernel, post: posterior_module.Posterior, Z_new, key, n_samples: int = 1,
    include_noise: bool = True,
):
    """Joint predictive draws (n_samples, M, D) at Z_new (M, Q)."""
    Z_new = checks.as_float_array("Z_new", Z_new, post.Z.dtype)
    checks.check_new_inputs(Z_new, post.Z.shape[1])
    draws = _sample_jit(kernel, post, Z_new, key, n_samples, include_noise)
    _raise_if_failed(draws, None, "sample")
    return draws

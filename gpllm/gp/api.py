"""The entry points users call: check inputs, then run the jit-compiled core.

Everything here validates concrete inputs *before* compiling (clear
:mod:`gpllm.errors` instead of a traceback from inside XLA), calls a cached
``jax.jit`` of the pure function in :mod:`objective`, :mod:`fit` or
:mod:`posterior`, and turns a failed factorisation into a
:class:`~gpllm.errors.CholeskyError` rather than a silent NaN. The kernel is a
static argument, so each kernel configuration compiles once.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from functools import partial
from typing import Literal, get_args, overload

import jax
import jax.numpy as jnp
import numpy as np

from gpllm import checks
from gpllm.errors import CholeskyError, InputError, ShapeError
from gpllm.gp import fit as fit_module
from gpllm.gp import parameters, sharding
from gpllm.gp import posterior as posterior_module
from gpllm.gp.cholesky import jitter_schedule
from gpllm.gp.fit import FitOptions
from gpllm.gp.kernels import Kernel, Params
from gpllm.gp.memory import check_gp_fits
from gpllm.gp.objective import (
    LML,
    GPParams,
    OutputScales,
    Path,
    Targets,
    check_output_scales,
    constraints_of,
    lml,
    params_shapes,
    prepare_targets,
    start_values_at,
    values_of,
)


def _keyword_only_after_data(fn):
    """``fn`` with a gpllm error for the old call forms that passed its optional
    arguments by position (``fit(kernel, Z, Y, params0, options)``): the error names the
    keyword form, where Python's would only count arguments. The keyword-only
    parameters keep the order their old positions had."""
    parameters_ = inspect.signature(fn).parameters.values()
    positional = [p.name for p in parameters_ if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keywords = [p.name for p in parameters_ if p.kind is inspect.Parameter.KEYWORD_ONLY]

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        if len(args) > len(positional):
            extra = keywords[: len(args) - len(positional)]
            form = ", ".join([*positional, *(f"{k}=..." for k in extra)])
            raise InputError(
                f"gp.{fn.__name__} takes {len(positional)} positional arguments ({', '.join(positional)}) "
                f"and got {len(args)}: its optional arguments are keyword-only, so call gp.{fn.__name__}({form})"
            )
        return fn(*args, **kwargs)

    return checked


def params_from_values(kernel: Kernel, kernel_values: Params, noise: float) -> GPParams:
    """Raw GPParams from constrained values, e.g. ``{"variance": 1.0, "lengthscale": 2.0}``.

    Args:
        kernel: the kernel whose parameters these are.
        kernel_values: a pytree shaped like ``kernel.init(Z)``'s, of constrained values.
        noise: the noise variance s2 (> 0).

    Returns:
        GPParams of raw (unconstrained) leaves, what ``fit``, ``condition`` and the
        likelihood take. InputError names a value its constraint forbids, or a
        structure that does not match the kernel's parameters.
    """
    values = GPParams(kernel=jax.tree.map(jnp.asarray, kernel_values), noise=jnp.asarray(noise))
    declared = constraints_of(kernel)
    parameters.check_values(declared, values)
    return parameters.unconstrain(declared, values)


def params_to_values(kernel: Kernel, params: GPParams) -> dict:
    """The constrained values of raw ``params``.

    Args:
        kernel: the kernel ``params`` belong to.
        params: raw GPParams.

    Returns:
        ``{"kernel": <the kernel's pytree of values>, "noise": s2}``.
    """
    values = values_of(kernel, params)
    return {"kernel": values.kernel, "noise": values.noise}


def _raise_if_failed(value, jitter, what: str, batched: bool = False) -> None:
    """CholeskyError if ``value`` (a factor, LML or variance; with a leading datasets axis
    when ``batched``) is not finite; its ``datasets`` attribute lists the failed ones."""
    if not checks.is_concrete(value) or np.all(np.isfinite(np.asarray(value))):
        return
    array = np.asarray(value)
    largest = jitter_schedule(array.dtype)[1]
    hint = "a gram holding NaN/inf, a noise variance near zero" + (
        "" if array.dtype == np.float64 else ", or float32 rounding (compute in float64)"
    )
    failed = ()
    if batched and array.ndim:
        failed = tuple(int(i) for i in np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1)))
    which = f" (dataset(s) {list(failed)} of {len(array)})" if failed else ""
    raise CholeskyError(
        f"{what}{which}: K + s2 I is not positive definite even with jitter up to {largest:g} x "
        f"mean(diag) ({array.dtype}); the kernel or noise is degenerate for these inputs (check for {hint})",
        datasets=failed,
        dtype=array.dtype.name,
    )


def _checked_data(
    Z,
    Y,
    batched=False,
    dtype=None,
    *,
    batch_size: int | None = None,
    mesh=None,
    what: str = "GP",
    output_scales: OutputScales = "shared",
):
    """Z, Y as float arrays of one dtype, checked (with per-output scales, no output may be
    all zero); and MemoryLimitError if a GP on them (when ``batched``, :func:`_in_flight`
    datasets at once) would not fit."""
    per_output = check_output_scales(output_scales)
    Z = checks.as_float_array("Z", Z, dtype)
    Y = checks.as_float_array("Y", Y, Z.dtype)
    checks.check_training_arrays(Z, Y, batched=batched)
    if per_output:
        _check_no_zero_output(Y, what)
    if mesh is not None:
        sharding.check_dataset_mesh(mesh)
    at_once = _in_flight(batch_size, Z.shape[0], mesh) if batched else 1
    n, d = Y.shape[-2:]
    check_gp_fits(n, d, Z.shape[-1], Z.dtype, at_once, what=what, per_output=per_output)
    return Z, Y


def _check_no_zero_output(Y, what: str) -> None:
    """InputError naming the outputs (columns of Y (..., N, D)) that are zero in every row:
    their maximum-likelihood scale c_g would be 0 (e.g. a gene constant in a fold, centred)."""
    if not checks.is_concrete(Y):
        return
    zero = np.all(np.asarray(Y) == 0, axis=-2)  # (..., D)
    if np.any(zero):
        where = np.argwhere(zero)
        named = ", ".join(f"column {w[-1]}" + (f" of dataset {w[0]}" if len(w) > 1 else "") for w in where[:5])
        raise InputError(
            f"{what}: Y has {len(where)} output(s) of zero variance ({named}{', ...' if len(where) > 5 else ''}): "
            "with output_scales='per_output' each output's scale is fitted, and a zero one makes the "
            "likelihood infinite; drop these outputs or use output_scales='shared'"
        )


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


@_keyword_only_after_data
def log_marginal_likelihood(
    kernel: Kernel, params: GPParams, Z, Y, *, path: Path = "auto", output_scales: OutputScales = "shared"
) -> LML:
    """Eq. 1, log p(Y | Z) = -1/2 tr(Y^T A^-1 Y) - D/2 log|A| - ND/2 log 2 pi, A = K + s2 I.

    Args:
        kernel: the covariance function.
        params: raw GPParams (:func:`params_from_values` builds them from values).
        Z: inputs (N, Q).
        Y: outputs (N, D).
        path: ``"direct"``, ``"gram"`` or ``"auto"`` (gram when D > N; :mod:`objective`).
        output_scales: ``"shared"`` (Eq. 1) or ``"per_output"``: y_g ~ N(0, c_g A) with
            c_g at its maximum, the profile likelihood -N/2 sum_g log(q_g / N)
            - D/2 log|A| - ND/2 (1 + log 2 pi), q_g = y_g^T A^-1 y_g (direct path).

    Returns:
        LML(value (), jitter ()): the jitter the Cholesky needed (0 when none).
        ShapeError for params that do not fit the kernel on Q columns (e.g. an ARD
        lengthscale of the wrong length); CholeskyError where A cannot be factorised.
    """
    Z, Y = _checked_data(Z, Y, what="log_marginal_likelihood", output_scales=output_scales)
    params = _checked_raw(kernel, params, Z, "params")
    result = _lml_jit(kernel, params, Z, prepare_targets(Y, path, output_scales))
    _raise_if_failed(result.value, result.jitter, "log_marginal_likelihood")
    return result


@_keyword_only_after_data
def value_and_grad(
    kernel: Kernel, params: GPParams, Z, Y, *, path: Path = "auto", output_scales: OutputScales = "shared"
):
    """Eq. 1 and its gradient in the raw params, by the hand-written VJP on A.

    Args:
        kernel: the covariance function (compiled once per kernel).
        params: raw GPParams.
        Z: inputs (N, Q).
        Y: outputs (N, D), or :class:`Targets` from :func:`prepare_targets` (then the
            gram path's QR is paid once per dataset rather than per call, and ``path``
            and ``output_scales`` keep their defaults: the targets already chose theirs).
        path, output_scales: as in :func:`log_marginal_likelihood`, for an array ``Y``.

    Returns:
        (value (), gradient): the gradient a GPParams of raw leaves shaped like ``params``.
    """
    if isinstance(Y, Targets):
        if path != "auto" or output_scales != "shared":
            raise InputError(
                f"value_and_grad: path={path!r} and output_scales={output_scales!r} apply to an "
                "array Y; these Targets chose theirs (prepare_targets(Y, path, output_scales))"
            )
        targets = Y
    else:
        Z, Y = _checked_data(Z, Y, what="value_and_grad", output_scales=output_scales)
        targets = prepare_targets(Y, path, output_scales)
    if checks.is_concrete(targets.n_outputs):
        check_gp_fits(
            Z.shape[0],
            int(targets.n_outputs),
            Z.shape[1],
            Z.dtype,
            what="value_and_grad",
            per_output=targets.per_output,
        )
    params = _checked_raw(kernel, params, Z, "params")
    value, grad = _value_and_grad_jit(kernel, params, Z, targets)
    _raise_if_failed(value, None, "value_and_grad")
    return value, grad


def _fit_with_starts(kernel: Kernel, Z, Y, params0, options: FitOptions):
    """:func:`gpllm.gp.fit.fit_traced`, and the constrained starts it compared (leaves stacked
    over :data:`~gpllm.gp.fit.NOISE_FRACTIONS`; None when the caller gave ``params0``) for
    :func:`_check_start`: computed once, inside the fit's own program, for both."""
    starts = None if params0 is not None else start_values_at(kernel, Z, Y, fit_module.NOISE_FRACTIONS)
    return fit_module.fit_traced(kernel, Z, Y, params0, options, starts=starts), starts


def _check_start(kernel: Kernel, starts: GPParams | None, dtype, what: str) -> None:
    """InputError naming a start ``kernel.init`` gave beyond its constraint, which
    :meth:`~gpllm.gp.parameters.Bounded.inverse` would clamp without a word (on a bound is fine)."""
    if starts is not None:
        parameters.check_start(
            constraints_of(kernel), starts, f"{what}: {type(kernel).__name__}.init's start params", dtype
        )


@partial(jax.jit, static_argnums=(0, 4))
def _fit_jit(kernel, Z, Y, params0, options):
    return _fit_with_starts(kernel, Z, Y, params0, options)


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
    def one(args):
        Z_b, Y_b, params0_b = args
        return _fit_with_starts(kernel, Z_b, Y_b, params0_b, options)

    return _over_datasets(one, (Z, Y, params0), batch_size, mesh)


#: What :func:`fit_predict_batched`'s leave-one-out predictions take Y's mean to be.
LeaveOneOutMean = Literal["zero_mean", "refitted_mean"]
LEAVE_ONE_OUT_MEANS = get_args(LeaveOneOutMean)


@partial(jax.jit, static_argnums=(0, 5, 6, 7, 8, 9))
def _fit_predict_batched_jit(kernel, Z, Y, params0, Z_new, options, include_noise, leave_one_out, batch_size, mesh):
    def one(args):
        z, y, start, z_new = args
        result, starts = _fit_with_starts(kernel, z, y, start, options)
        post = posterior_module.condition(kernel, result.params, z, y, options.output_scales)
        prediction = posterior_module.predict(kernel, post, z_new, include_noise)
        if leave_one_out is not None:  # from the same factor, in this program: no second Cholesky per dataset
            prediction = (*prediction, posterior_module.leave_one_out(post, y, leave_one_out == "refitted_mean"))
        return result, prediction, starts

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


@overload
def _checked_raw(kernel: Kernel, params: GPParams, Z, name: str = "params0") -> GPParams: ...
@overload
def _checked_raw(kernel: Kernel, params: None, Z, name: str = "params0") -> None: ...
@overload
def _checked_raw(kernel: Kernel, params: GPParams | None, Z, name: str = "params0") -> GPParams | None: ...
def _checked_raw(kernel: Kernel, params: GPParams | None, Z, name: str = "params0") -> GPParams | None:
    """Raw ``params`` checked against the kernel's parameters for inputs Z (structure,
    shapes, finiteness); ``Z`` (N, Q) or, for batched params, (B, N, Q)."""
    if params is None:
        return None
    if not isinstance(params, GPParams):
        raise InputError(f"{name} must be raw GPParams (see gp.params_from_values), got {type(params).__name__}")
    parameters.check_values(constraints_of(kernel), params, name, raw=True)
    n, q = Z.shape[-2:]
    expected = params_shapes(kernel, n, q, Z.dtype)
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


@_keyword_only_after_data
def fit(
    kernel: Kernel, Z, Y, *, params0: GPParams | None = None, options: FitOptions | None = None
) -> fit_module.FitResult:
    """Maximise Eq. 1 over the kernel's parameters and the noise, one compiled optax loop.

    Args:
        kernel: the covariance function.
        Z: inputs (N, Q).
        Y: outputs (N, D).
        params0: raw GPParams to start from (default: the best of a few data-aware
            starts, :func:`gpllm.gp.fit.initial_params`).
        options: :class:`~gpllm.gp.fit.FitOptions` (any optax optimiser, steps, tolerances).

    Returns:
        :class:`~gpllm.gp.fit.FitResult`: raw ``params`` and constrained ``values``, the
        final ``lml`` (), ``jitter`` (), the LML trace, ``n_steps`` and ``converged``.
    """
    options = _checked_options(options)
    Z, Y = _checked_data(Z, Y, what="gp.fit", output_scales=options.output_scales)
    result, starts = _fit_jit(kernel, Z, Y, _checked_raw(kernel, params0, Z), options)
    _check_start(kernel, starts, Z.dtype, "fit")
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


@_keyword_only_after_data
def fit_batched(
    kernel: Kernel,
    Z,
    Y,
    *,
    params0: GPParams | None = None,
    options: FitOptions | None = None,
    batch_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> fit_module.FitResult:
    """One compiled fit over a leading axis of datasets (e.g. CV folds of one size).

    Args:
        kernel: the covariance function, shared by all datasets.
        Z: inputs (B, N, Q); every dataset has the same N.
        Y: outputs (B, N, D).
        params0: raw GPParams with a leading B axis on every leaf (default: each
            dataset's data-aware start).
        options: as in :func:`fit`.
        batch_size: datasets vmapped together (``lax.map`` runs the groups in turn,
            still in one compiled call); default :func:`default_batch_size`.
        mesh: :func:`gpllm.gp.sharding.dataset_mesh` spreads the datasets over its
            devices, each fitting its share in groups of ``batch_size``; B need not
            divide the device count.

    Returns:
        FitResult whose leaves have a leading B axis: each dataset's own
        hyperparameters and convergence.
    """
    options = _checked_options(options)
    Z, Y = _checked_data(
        Z, Y, batched=True, batch_size=batch_size, mesh=mesh, what="fit_batched", output_scales=options.output_scales
    )
    args = (Z, Y, _checked_raw(kernel, params0, Z))
    result, starts = _run_batched(partial(_fit_batched_jit, kernel), args, (options,), batch_size, mesh)
    _check_start(kernel, starts, Z.dtype, "fit_batched")
    _raise_if_failed(result.lml, result.jitter, "fit_batched", batched=True)
    return _flag_jitter_dominated(kernel, result, "fit_batched")


@_keyword_only_after_data
def fit_predict_batched(
    kernel: Kernel,
    Z,
    Y,
    Z_new,
    *,
    params0: GPParams | None = None,
    options: FitOptions | None = None,
    include_noise: bool = True,
    leave_one_out: LeaveOneOutMean | None = None,
    batch_size: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> tuple:
    """:func:`fit_batched`, then each dataset's prediction at its own new inputs, in one
    compiled call: one program per shape instead of three (on CPU compiling dominates small fits).

    Args:
        kernel, Z (B, N, Q), Y (B, N, D), params0, options, batch_size, mesh: as in
            :func:`fit_batched`.
        Z_new: each dataset's new inputs (B, M, Q).
        include_noise: as in :func:`predict` (default True).
        leave_one_out: also each dataset's exact leave-one-out predictions on its training
            points, from the same factor (:func:`gpllm.gp.posterior.leave_one_out`):
            ``"zero_mean"`` for Y modelled as given, ``"refitted_mean"`` for Y centred by its
            training mean, which each held-out fit re-estimates without its point.

    Returns:
        (FitResult with a leading B axis, mean (B, M, D), variance (B, M), or (B, M, D)
        with ``options.output_scales="per_output"``), and with ``leave_one_out`` a fourth
        item, :class:`~gpllm.gp.posterior.LeaveOneOut` with residuals (B, N, D) and
        variances (B, N) or (B, N, D).
    """
    options = _checked_options(options)
    Z, Y = _checked_data(
        Z,
        Y,
        batched=True,
        batch_size=batch_size,
        mesh=mesh,
        what="fit_predict_batched",
        output_scales=options.output_scales,
    )
    Z_new = checks.as_float_array("Z_new", Z_new, Z.dtype)
    checks.check_rank("Z_new", Z_new, 3)
    if Z_new.shape[0] != Z.shape[0]:
        raise ShapeError(f"Z_new holds {Z_new.shape[0]} datasets but Z holds {Z.shape[0]}")
    checks.check_new_inputs(Z_new.reshape(-1, Z_new.shape[-1]), Z.shape[-1])
    if leave_one_out not in (None, *LEAVE_ONE_OUT_MEANS):
        raise InputError(f"leave_one_out must be None or one of {LEAVE_ONE_OUT_MEANS}, got {leave_one_out!r}")
    args = (Z, Y, _checked_raw(kernel, params0, Z), Z_new)
    statics = (options, include_noise, leave_one_out)
    jitted = partial(_fit_predict_batched_jit, kernel)
    result, prediction, starts = _run_batched(jitted, args, statics, batch_size, mesh)
    _check_start(kernel, starts, Z.dtype, "fit_predict_batched")
    _raise_if_failed(result.lml, result.jitter, "fit_predict_batched", batched=True)
    _raise_if_failed(prediction[1], None, "fit_predict_batched (conditioning)", batched=True)
    return (result, *prediction)


@partial(jax.jit, static_argnums=(0, 4))
def _condition_jit(kernel, params, Z, Y, output_scales):
    return posterior_module.condition(kernel, params, Z, Y, output_scales)


@_keyword_only_after_data
def condition(
    kernel: Kernel, params: GPParams, Z, Y, *, output_scales: OutputScales = "shared"
) -> posterior_module.Posterior:
    """Factor A = K + s2 I once, for any number of predictions and samples.

    Args:
        kernel: the covariance function.
        params: raw GPParams (e.g. ``fit(...).params``).
        Z: training inputs (N, Q).
        Y: training outputs (N, D).
        output_scales: ``"shared"`` (Eq. 1) or ``"per_output"`` (c_g = y_g^T A^-1 y_g / N,
            the fit's scales; predictions then have a variance per output).

    Returns:
        :class:`~gpllm.gp.posterior.Posterior` (the factor L (N, N), alpha = A^-1 Y (N, D),
        ``scales`` (D,) or None, ...).
    """
    Z, Y = _checked_data(Z, Y, what="condition", output_scales=output_scales)
    post = _condition_jit(kernel, _checked_raw(kernel, params, Z, "params"), Z, Y, output_scales)
    _raise_if_failed(post.L, post.jitter, "condition")
    return post


class VarianceWarning(UserWarning):
    """A predictive variance lies at the floor rounding can resolve: its value is not known."""


@partial(jax.jit, static_argnums=(0, 3))
def _predict_jit(kernel, post, Z_new, include_noise):
    mean, var = posterior_module.predict(kernel, post, Z_new, include_noise)
    floor = posterior_module.per_output(post, posterior_module.variance_floor(kernel, post, Z_new))
    unresolved = var < 2 * floor
    return mean, var, jnp.sum(unresolved if unresolved.ndim == 1 else jnp.any(unresolved, axis=1))


def _warn_if_unresolved(n_unresolved, n_points: int, what: str) -> None:
    if int(n_unresolved):
        warnings.warn(
            f"{what}: the predictive variance at {int(n_unresolved)} of {n_points} test point(s) lies at "
            "the floor N eps k(z*, z*) that rounding can resolve in k** - k*^T A^-1 k* (floored there, "
            "not 0): the kernel's variance is far out of scale with the noise and the data; rescale Y "
            "or refit",
            VarianceWarning,
            stacklevel=3,
        )


@_keyword_only_after_data
def predict(kernel: Kernel, post: posterior_module.Posterior, Z_new, *, include_noise: bool = True):
    """Posterior mean and variance at new inputs, from the factor of :func:`condition`.

    mean = K(Z*, Z) A^-1 Y;  var = k(z*, z*) - k*^T A^-1 k* (+ s2 with ``include_noise``).

    ``include_noise`` defaults to True in :func:`predict`, :func:`sample` and
    :func:`fit_predict_batched`: the distribution of a *measured* profile at z*,
    which is what a prediction is compared with (every gpllm model, the calibration
    scores and ``gpllm active`` use it). False gives the latent function's.

    The latent variance is a difference of two numbers of size k(z*, z*): where it
    falls below N eps k(z*, z*) (e.g. a kernel variance of 1e300 at a training input)
    rounding leaves nothing of it, so it is floored there and a :class:`VarianceWarning`
    names how many test points (whose returned variance is under twice the floor) it hit.

    Args:
        kernel: the kernel the posterior was conditioned with.
        post: :func:`condition`'s Posterior.
        Z_new: new inputs (M, Q).
        include_noise: add the noise variance s2 (default True, above).

    Returns:
        (mean (M, D), variance): (M,), one per test point shared by all outputs, or (M, D),
        c_g times it, where ``post`` has per-output scales.
    """
    Z_new = checks.as_float_array("Z_new", Z_new, post.Z.dtype)
    checks.check_new_inputs(Z_new, post.Z.shape[1])
    mean, var, n_unresolved = _predict_jit(kernel, post, Z_new, include_noise)
    _warn_if_unresolved(n_unresolved, Z_new.shape[0], "gp.predict")
    return mean, var


@partial(jax.jit, static_argnums=(0, 4, 5))
def _sample_jit(kernel, post, Z_new, key, n_samples, include_noise):
    return posterior_module.sample(kernel, post, Z_new, key, n_samples, include_noise)


@_keyword_only_after_data
def sample(
    kernel: Kernel,
    post: posterior_module.Posterior,
    Z_new,
    key,
    *,
    n_samples: int = 1,
    include_noise: bool = True,
):
    """Joint draws from the predictive distribution at new inputs.

    Args:
        kernel: the kernel the posterior was conditioned with.
        post: :func:`condition`'s Posterior.
        Z_new: new inputs (M, Q).
        key: a ``jax.random`` key.
        n_samples: draws per output.
        include_noise: as in :func:`predict` (default True: draws of measured profiles).

    Returns:
        draws (n_samples, M, D): each output independent given the kernel, jointly
        Gaussian over the M points (output g's covariance times c_g with per-output scales).
    """
    Z_new = checks.as_float_array("Z_new", Z_new, post.Z.dtype)
    checks.check_new_inputs(Z_new, post.Z.shape[1])
    draws = _sample_jit(kernel, post, Z_new, key, n_samples, include_noise)
    _raise_if_failed(draws, None, "sample")
    return draws

"""Eq. 1: the multi-output log-marginal likelihood with ONE shared Cholesky.

For inputs Z (N, Q) and outputs Y (N, D), independent given one kernel,

    log p(Y | Z) = -1/2 tr(Y^T A^{-1} Y) - D/2 log|A| - N D/2 log(2 pi),   A = K(Z, Z) + s2 I.

Y enters only through a factor F (N, R) with F F^T = Y Y^T, since
tr(Y^T A^{-1} Y) = |L^{-1} F|_F^2 for A = L L^T. Two choices of F:

- ``"direct"``: F = Y (R = D).
- ``"gram"``: F = R^T from a QR of Y^T (R = min(N, D)), computed once per
  dataset. F is lower triangular (trapezoidal when D < N), so every product
  with it skips its zeros; for D > N each evaluation is O(N^3) whatever D is.

The gradient is written by hand (a ``custom_vjp``) instead of differentiating
through the Cholesky, which costs ~3.5x the forward pass. With V = L^{-1},
W = V F, U = V^T and B = A^{-1} F = U W:

    dLML/dA = 1/2 (B B^T - D A^{-1}),   A^{-1} = U U^T,

every product formed by blocks that skip the zeros of the triangular operands
and the mirror half of the symmetric results (:mod:`gpllm.gp.blocked`), so
nearly all of the work is GEMMs at XLA's rate rather than LAPACK's trsm.
Measured at N = 10,000, D = 8,000 on 2 CPU cores (gram path): value +
gradient 32 s in float64 and 15 s in float32, against 64 s before (direct
path, two trsm with N right-hand sides in the gradient). Autodiff then carries
dLML/dA through the kernel to the hyperparameters, so any kernel works. No
N x N x D array and never D factorisations. Without a gradient, the value
alone takes the cheaper route: potrf and one solve.

Per-output scales (``output_scales="per_output"``): y_g ~ N(0, c_g A), one free
scale per output. For fixed A the maximum-likelihood c_g = q_g / N with
q_g = |L^{-1} y_g|^2, and the profile likelihood is

    LML_p = -N/2 sum_g log(q_g / N) - D/2 log|A| - N D/2 (1 + log 2 pi),

still one Cholesky per evaluation. Its gradient in A is the same expression
with W's columns divided by sqrt(c_g): dLML_p/dA = 1/2 (A^{-1} Y C^{-1} Y^T A^{-1}
- D A^{-1}), C = diag(c_g), so the hand-written VJP serves it unchanged. It takes
the direct path: q_g needs each output's own column of L^{-1} Y, and the gram
path's factor F = R^T mixes the columns (y_g = F Q_g with Q_g the g-th row of
Y^T's Q, so q_g = |L^{-1} F Q_g|^2 costs N^2 D per evaluation, the direct path's
own cost). LML_p depends on the kernel's and the noise's variances only through
their ratios (c_g absorbs a common factor), and it is at least Eq. 1 at the same
hyperparameters (Eq. 1 is LML_p's objective at c_g = 1 before maximising).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from gpllm.errors import InputError
from gpllm.gp import blocked, parameters
from gpllm.gp.cholesky import cholesky_with_jitter
from gpllm.gp.kernels import Kernel, Params

Path = Literal["auto", "direct", "gram"]
OutputScales = Literal["shared", "per_output"]
OUTPUT_SCALES = ("shared", "per_output")


class GPParams(NamedTuple):
    """All hyperparameters: raw (unconstrained) leaves, as optimisers hold them, or
    constrained values; :func:`constraints_of` maps one to the other."""

    kernel: Params  # the kernel's own pytree
    # () noise variance s2 (positive), raw or constrained; constraints_of holds its Constraint here
    noise: Any


def constraints_of(kernel: Kernel) -> GPParams:
    """The declared constraint of every hyperparameter: the kernel's, and positive noise."""
    return GPParams(kernel=kernel.constraints(), noise=parameters.positive)


def values_of(kernel: Kernel, params: GPParams) -> GPParams:
    """Constrained values of raw ``params`` (what ``kernel.gram`` receives)."""
    return parameters.constrain(constraints_of(kernel), params)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=("factor", "n_outputs"),
    meta_fields=("lower_triangular", "per_output"),
)
@dataclasses.dataclass(frozen=True)
class Targets:
    """Y as the likelihood consumes it: a factor of Y Y^T and the output count.

    ``lower_triangular`` (static): the factor is the gram path's R^T, with
    F[i, j] = 0 for j > i (triangular, or trapezoidal when D < N), whose zeros
    the solves and products skip (:mod:`gpllm.gp.blocked`). ``per_output`` (static):
    each output has its own scale c_g, profiled out (the factor is then Y itself).
    """

    factor: jax.Array  # (N, R): Y itself (R = D) or the QR factor (R = min(N, D))
    n_outputs: jax.Array  # () D, the number of outputs Y had
    lower_triangular: bool = False
    per_output: bool = False


class LML(NamedTuple):
    """A likelihood value with the jitter its Cholesky needed (0 when none)."""

    value: jax.Array
    jitter: jax.Array


def check_output_scales(output_scales: str) -> bool:
    """Whether ``output_scales`` asks for per-output scales; InputError unless it is one of :data:`OUTPUT_SCALES`."""
    if output_scales not in OUTPUT_SCALES:
        raise InputError(f"output_scales must be one of {OUTPUT_SCALES}, got {output_scales!r}")
    return output_scales == "per_output"


def choose_path(
    n: int, d: int, path: Path = "auto", output_scales: OutputScales = "shared"
) -> Literal["direct", "gram"]:
    """``"gram"`` when D > N (each evaluation then costs O(N^3)), else ``"direct"``; always
    ``"direct"`` with per-output scales (module docstring), where ``"gram"`` is an InputError."""
    if check_output_scales(output_scales):
        if path == "gram":
            raise InputError(
                "output_scales='per_output' needs each output's own column of L^-1 Y: "
                "use path='direct' or 'auto', not 'gram'"
            )
        return "direct"
    if path == "auto":
        return "gram" if d > n else "direct"
    if path not in ("direct", "gram"):
        raise InputError(f"path must be 'auto', 'direct' or 'gram', got {path!r}")
    return path


def prepare_targets(Y: jax.Array, path: Path = "auto", output_scales: OutputScales = "shared") -> Targets:
    """Y (N, D) -> Targets; ``"gram"`` stores F = R^T with Y^T = Q R, so F F^T = Y Y^T.

    QR rather than a Cholesky of Y Y^T: it never squares Y's condition number
    and copes with rank-deficient Y (e.g. column-centred Y has rank N - 1).
    ``output_scales``: ``"shared"`` (Eq. 1) or ``"per_output"`` (the profile likelihood).
    """
    n, d = Y.shape
    gram = choose_path(n, d, path, output_scales) == "gram"
    factor = jnp.linalg.qr(Y.T, mode="r").T if gram else Y
    return Targets(
        factor=factor,
        n_outputs=jnp.asarray(d, dtype=Y.dtype),
        lower_triangular=gram,
        per_output=output_scales == "per_output",
    )


def _lml_from_parts(quad, logdet, n, n_outputs):
    """Eq. 1 from |L^{-1} F|_F^2, log|A| and the sizes."""
    return -0.5 * quad - 0.5 * n_outputs * logdet - 0.5 * n * n_outputs * math.log(2.0 * math.pi)


def output_scales_of(W: jax.Array) -> jax.Array:
    """The maximum-likelihood scales c_g = |W[:, g]|^2 / N, (D,), for W = L^{-1} Y (N, D).

    Floored at the dtype's smallest normal number, so that an output of zero
    variance gives a finite (enormous) likelihood rather than NaN where no check
    ran (under ``vmap``); the checked entry points refuse such outputs by name.
    """
    return jnp.maximum(jnp.sum(W * W, axis=0) / W.shape[0], jnp.finfo(W.dtype).tiny)


def _profile_lml(scales, logdet, n, n_outputs):
    """LML_p = -N/2 sum_g log c_g - D/2 log|A| - N D/2 (1 + log 2 pi), c_g the ML scales."""
    constant = 0.5 * n * n_outputs * (1.0 + math.log(2.0 * math.pi))
    return -0.5 * n * jnp.sum(jnp.log(scales)) - 0.5 * n_outputs * logdet - constant


def _value(W, logdet, n, n_outputs, per_output):
    """The likelihood from W = L^{-1} F and log|A|: Eq. 1 or the per-output profile."""
    if per_output:
        return _profile_lml(output_scales_of(W), logdet, n, n_outputs)
    return _lml_from_parts(jnp.sum(W * W), logdet, n, n_outputs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def gaussian_lml(
    A: jax.Array, factor: jax.Array, n_outputs: jax.Array, lower_triangular: bool = False, per_output: bool = False
) -> LML:
    """Eq. 1 given A = K + s2 I (N, N), a factor F (N, R) of Y Y^T, and D;
    ``lower_triangular`` (static): F[i, j] = 0 for j > i (the gram path's R^T);
    ``per_output`` (static): the profile likelihood with one scale per output (F = Y).

    Differentiable in A (and F); the jitter is treated as a constant.
    """
    L, jitter = cholesky_with_jitter(A)
    W = blocked.solve_lower(L, factor, trapezoidal=lower_triangular)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))
    return LML(_value(W, logdet, L.shape[0], n_outputs, per_output), jitter)


def _forward(A, factor, n_outputs, trapezoidal, per_output):
    L, jitter = cholesky_with_jitter(A)
    # The gradient needs V = L^{-1} anyway (A^{-1} = V^T V), and W = V F as a product
    # runs at the GEMM rate where a solve with a triangular F does not.
    V = blocked.inverse_lower(L)
    W = blocked.triangular_times(V, factor, lower=True, trapezoidal=trapezoidal)
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))
    value = _value(W, logdet, L.shape[0], n_outputs, per_output)
    # dLML_p/dA is Eq. 1's with each column of Y divided by sqrt(c_g): scale W likewise.
    column_weights = jax.lax.rsqrt(output_scales_of(W)) if per_output else jnp.ones((), W.dtype)
    return LML(value, jitter), (V, W * column_weights, n_outputs, logdet, column_weights)


def _backward(trapezoidal, per_output, residuals, cotangent):
    """dLML/dA = 1/2 (B B^T - D A^{-1}) with U = V^T = L^{-T}, B = A^{-1} F = U W and
    A^{-1} = U U^T, each from the blocks on and below the diagonal (:mod:`gpllm.gp.blocked`)."""
    V, W, n_outputs, logdet, column_weights = residuals
    g = cotangent.value
    n = V.shape[0]
    U = V.T  # once: XLA's CPU GEMM contracting the rows of its left operand runs at ~2/3 rate
    B = blocked.triangular_times(U, W, lower=False, trapezoidal=trapezoidal)
    inverse = blocked.gram_of_upper(U)
    outer = blocked.lower_blocks_of_product(B, trapezoidal=False)
    dA = blocked.from_lower_blocks({k: (0.5 * g) * (outer[k] - n_outputs * inverse[k]) for k in inverse})
    # d/dF = -A^{-1} F (-A^{-1} F C^{-1} with per-output scales); dead code under jit
    # unless someone differentiates w.r.t. Y.
    dfactor = -g * B * column_weights
    dn_outputs = g * (-0.5 * logdet - 0.5 * n * (per_output + math.log(2.0 * math.pi)))
    return dA, dfactor, dn_outputs


gaussian_lml.defvjp(_forward, _backward)


def params_like(params, x: jax.Array):
    """Every leaf of ``params`` in x's dtype: float64 hyperparameters (e.g. a saved
    fit's) work with float32 data instead of failing inside a LAPACK call."""
    return jax.tree.map(lambda p: jnp.asarray(p, x.dtype), params)


def covariance(kernel: Kernel, params: GPParams, Z: jax.Array) -> jax.Array:
    """A = K(Z, Z) + s2 I, (N, N), in Z's dtype."""
    values = values_of(kernel, params_like(params, Z))
    K = kernel.gram(values.kernel, Z)
    return K + values.noise * jnp.eye(Z.shape[0], dtype=K.dtype)


def lml(kernel: Kernel, params: GPParams, Z: jax.Array, targets: Targets) -> LML:
    """Eq. 1 for Z (N, Q) and prepared targets; pure and traceable (no input checks)."""
    return gaussian_lml(
        covariance(kernel, params, Z), targets.factor, targets.n_outputs, targets.lower_triangular, targets.per_output
    )


def start_values(kernel: Kernel, Z: jax.Array, Y: jax.Array, noise_fraction: float = 0.1) -> GPParams:
    """Data-aware constrained start: kernel defaults (``kernel.init``, e.g. a
    median-distance lengthscale) with the signal variance set to (1 - noise_fraction)
    of Y's mean per-output variance and the noise to the rest.
    """
    return _start_from_shares(kernel, Z, Y, 1.0 - noise_fraction, noise_fraction)


def _start_from_shares(kernel: Kernel, Z: jax.Array, Y: jax.Array, signal_share, noise_share) -> GPParams:
    """The kernel's start at ``signal_share`` of Y's mean per-output variance, the noise at ``noise_share``."""
    total = jnp.mean(jnp.var(Y, axis=0))
    total = jnp.where(total > 0, total, jnp.ones((), Y.dtype))
    return GPParams(kernel=kernel.init(Z, signal_share * total), noise=noise_share * total)


def start_values_at(kernel: Kernel, Z: jax.Array, Y: jax.Array, noise_fractions: Sequence[float]) -> GPParams:
    """:func:`start_values` at each of ``noise_fractions``, leaves stacked (F, ...): the same values.

    One ``kernel.init`` vmapped over the fractions, so what it computes from Z alone (e.g. the
    median distance, a sort of up to 500,000 values, ~0.13 s at N = 1,000 on one core) is
    computed once; separate calls each carried their own copy, which XLA does not merge.
    """
    signal = jnp.asarray([1.0 - f for f in noise_fractions], Y.dtype)  # rounded as the scalars were
    noise = jnp.asarray(noise_fractions, Y.dtype)
    return jax.vmap(lambda s, e: _start_from_shares(kernel, Z, Y, s, e))(signal, noise)


def init_params(kernel: Kernel, Z: jax.Array, Y: jax.Array, noise_fraction: float = 0.1) -> GPParams:
    """:func:`start_values` as raw params (a value on a Bounded's bound is moved just inside)."""
    return parameters.unconstrain(constraints_of(kernel), start_values(kernel, Z, Y, noise_fraction))


def params_shapes(kernel: Kernel, n: int, q: int, dtype) -> GPParams:
    """The structure of ``kernel``'s raw parameters for inputs (n, q): a GPParams of
    ``jax.ShapeDtypeStruct`` leaves, traced from :func:`init_params`, never computed."""
    key = (kernel, int(n), int(q), jnp.dtype(dtype).name)
    try:
        return _params_shapes(*key)
    except TypeError:  # an unhashable kernel: trace it each time
        return _params_shapes.__wrapped__(*key)


@functools.lru_cache(maxsize=128)
def _params_shapes(kernel: Kernel, n: int, q: int, dtype: str) -> GPParams:
    return jax.eval_shape(lambda z: init_params(kernel, z, z[:, :1]), jax.ShapeDtypeStruct((n, q), dtype))

"""Peer implementations of the multi-output GP log-marginal likelihood, for the LML benchmark.

The quantity (DESIGN.md, "The core: Eq. 1"), for inputs Z (N, Q) and outputs Y (N, D), the
D outputs independent given one shared RBF kernel:

    log p(Y|Z) = -1/2 tr(Y^T A^{-1} Y) - D/2 log|A| - N D/2 log(2 pi),   A = K + s2 I,
    K_ij = variance * exp(-0.5 |z_i - z_j|^2 / lengthscale^2)

Each ``make_<peer>(Z, Y, variance, lengthscale, noise, dtype)`` returns a :class:`PeerCase`
whose ``run()`` does ONE value + gradient evaluation at those fixed hyperparameters (JAX
peers are compiled in the factory) and returns ``(value, grad)``; ``grad`` is a length-3
array ordered (variance, lengthscale, noise) in the peer's natural convention, named by
``PeerCase.grad_convention`` and converted to plain dLML/dtheta by :func:`grad_to_theta`:

* ``"theta"``          -- dLML/d(variance, lengthscale, s2).                         [numpy]
* ``"log_theta"``      -- dLML/dlog(theta) = theta * dLML/dtheta.               [sklearn, tinygp]
* ``"gpjax_softplus"`` -- dLML/du for GPJax's stored u = softplus^{-1}(p), p = (variance,
  lengthscale, obs_stddev = sqrt(s2)): dLML/du = dLML/dp * sigmoid(u) = dLML/dp * (1 - e^{-p}),
  dLML/dobs_stddev = 2 sqrt(s2) dLML/ds2.                                               [gpjax]
* ``"none"``           -- value only; grad is NaN.                              [sklearn-value]

GPJax adds its default jitter 1e-6 to the diagonal (``PeerCase.extra_diag``): its value and
gradient are those of the LML at noise s2 + 1e-6 (gradients w.r.t. its own parameters).

Precision: JAX peers compute in the dtype asked for only if ``jax_enable_x64`` matches it
(under x64, GPJax's and tinygp's float64 zero-mean constants silently upcast float32 data),
so the factories refuse a mismatch; the CLI sets x64 from ``--dtype`` before anything runs.

CLI (one case per fresh process, so its peak RSS is its own)::

    python -m benchmarks.peers --case sklearn|sklearn-value|gpjax|tinygp|numpy \
        --n 1400 --q 100 --d 2000 --dtype float64 --repeats 5 --seed 0 [--max-bytes B]
    python -m benchmarks.peers --selfcheck
    python -m benchmarks.peers --gemm [--n 2000] [--dtype float32]

prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import gpjax as gpx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

GIB = 1024**3
DEFAULT_MAX_BYTES = 6 * GIB
HYPERS = {"variance": 1.0, "lengthscale": 1.0, "noise": 0.1}
GPJAX_JITTER = 1e-6  # gpx.gps.Prior's default; kept because that is what GPJax users get
GRAD_ORDER = ("variance", "lengthscale", "noise")
REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerCase:
    """One peer ready to evaluate.

    run() -> (value: float, grad: (3,) ndarray ordered (variance, lengthscale, noise)) in
    ``grad_convention``. ``d_used``: outputs actually used (sklearn's gradient may use fewer
    than D); ``extra_diag``: what the peer adds to A's diagonal on top of s2.
    """

    name: str
    run: Callable[[], tuple[float, np.ndarray]]
    note: str
    grad_convention: str = "theta"
    d_used: int | None = None
    extra_diag: float = 0.0
    flops: float | None = None  # of one run, where the case can count them (gpllm)


class Timing(NamedTuple):
    median_s: float
    min_s: float
    all_s: tuple[float, ...]


class GemmRate(NamedTuple):
    """GFLOP/s of an n x n x n GEMM (2 n^3 FLOPs), through jitted jnp.matmul and np.dot."""

    jax_gflops: float
    numpy_gflops: float
    n: int
    dtype: str


# --------------------------------------------------------------------------------------
# Data and the NumPy/SciPy reference
# --------------------------------------------------------------------------------------


def sq_dists(Z: np.ndarray) -> np.ndarray:
    """(N, Q) -> (N, N) squared distances |a|^2 + |b|^2 - 2 a.b (one GEMM).

    Clamped at 0: cancellation can leave tiny negatives on and near the diagonal.
    """
    sq_norms = np.einsum("ij,ij->i", Z, Z)
    return np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * (Z @ Z.T), 0.0)


def make_problem(n: int, q: int, d: int, seed: int = 0, dtype=np.float64):
    """Deterministic (Z (n, q), Y (n, d)) in ``dtype``.

    Z ~ N(0, I/(2q)) so |z_i - z_j|^2 ~ chi2_q / q: median distance ~1, the scale of the
    default lengthscale. Y is drawn from the GP at HYPERS so the LML values are typical;
    the cost of an evaluation does not depend on them.
    """
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, q)) / math.sqrt(2.0 * q)
    K = HYPERS["variance"] * np.exp(-0.5 * sq_dists(Z) / HYPERS["lengthscale"] ** 2)
    L = np.linalg.cholesky(K + HYPERS["noise"] * np.eye(n))
    Y = L @ rng.standard_normal((n, d))
    return Z.astype(dtype), Y.astype(dtype)


def numpy_reference_lml(
    Z: np.ndarray, Y: np.ndarray, variance: float, lengthscale: float, noise: float
) -> tuple[float, np.ndarray]:
    """LML of Y (N, D) and its gradient dLML/d(variance, lengthscale, s2), in Z's dtype.

    One Cholesky of A for all outputs; with alpha = A^{-1} Y (N, D),
    dLML/dtheta = 1/2 tr(W dA/dtheta), W = alpha alpha^T - D A^{-1}, where
    dA/dvariance = K/variance, dA/dlengthscale = K * sqdist / lengthscale^3, dA/ds2 = I.
    Only N x N and N x D arrays: tr(W dA) is a sum of an elementwise product.
    """
    n, d = Y.shape
    sq = sq_dists(Z)
    K = variance * np.exp(-0.5 / lengthscale**2 * sq)
    A = K + noise * np.eye(n, dtype=Y.dtype)
    factor = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
    alpha = scipy.linalg.cho_solve(factor, Y, check_finite=False)
    half_logdet = np.sum(np.log(np.diag(factor[0])))
    value = -0.5 * np.vdot(Y, alpha) - d * half_logdet - 0.5 * n * d * math.log(2.0 * math.pi)
    A_inv = scipy.linalg.cho_solve(factor, np.eye(n, dtype=Y.dtype), check_finite=False)
    W = alpha @ alpha.T - d * A_inv
    grad = 0.5 * np.array([np.vdot(W, K) / variance, np.vdot(W, K * sq) / lengthscale**3, np.trace(W)])
    return float(value), grad


def grad_to_theta(grad: np.ndarray, convention: str, variance: float, lengthscale: float, noise: float) -> np.ndarray:
    """Convert a peer's (3,) gradient to dLML/d(variance, lengthscale, s2) (module docstring)."""
    grad = np.asarray(grad, dtype=np.float64)
    theta = np.array([variance, lengthscale, noise])
    if convention == "theta":
        return grad
    if convention == "log_theta":
        return grad / theta
    if convention == "gpjax_softplus":
        p = np.array([variance, lengthscale, math.sqrt(noise)])
        dlml_dp = grad / -np.expm1(-p)  # softplus'(u) = sigmoid(u) = 1 - exp(-softplus(u))
        return dlml_dp * np.array([1.0, 1.0, 0.5 / math.sqrt(noise)])  # d sigma / d s2
    if convention == "softplus":  # gpllm: u = softplus^{-1}(theta) for all three
        return grad / -np.expm1(-theta)
    if convention == "none":
        return np.full(3, np.nan)
    raise ValueError(f"unknown gradient convention {convention!r}")


# --------------------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------------------


def make_numpy(Z, Y, variance, lengthscale, noise, dtype=np.float64) -> PeerCase:
    """NumPy/SciPy, one cho_factor for all outputs, analytic gradient (numpy_reference_lml)."""
    Z, Y = np.asarray(Z, dtype), np.asarray(Y, dtype)
    return PeerCase(
        name="numpy",
        run=lambda: numpy_reference_lml(Z, Y, variance, lengthscale, noise),
        note="NumPy/SciPy: one cho_factor, cho_solve with D right-hand sides, analytic "
        "gradient 1/2 tr((alpha alpha^T - D A^-1) dA/dtheta) by matrix products; "
        "grad = dLML/d(variance, lengthscale, s2).",
        grad_convention="theta",
        d_used=Y.shape[1],
    )


def make_sklearn(
    Z,
    Y,
    variance,
    lengthscale,
    noise,
    dtype=np.float64,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    eval_gradient: bool = True,
) -> PeerCase:
    """scikit-learn GaussianProcessRegressor, fitted once, then log_marginal_likelihood(theta).

    sklearn's theta is log(constant_value, length_scale, noise_level) = log(variance,
    lengthscale, s2) for C*RBF + White, so its gradient is dLML/dlog(theta). With 2-D y it
    sums the per-output LMLs (= Eq. 1), but its gradient builds an (N, N, D) array: when
    N*N*D*8 > max_bytes it runs on the first d_used = max_bytes // (8 N^2) outputs.
    eval_gradient=False: value only, always at full D.
    """
    if np.dtype(dtype) != np.float64:
        raise NotImplementedError("scikit-learn's GP works in float64 only")
    n, d = Y.shape
    d_used = d if not eval_gradient else max(1, min(d, max_bytes // (8 * n * n)))
    kernel = ConstantKernel(variance) * RBF(lengthscale) + WhiteKernel(noise)
    gpr = GaussianProcessRegressor(kernel=kernel, optimizer=None, normalize_y=False, alpha=0.0)
    gpr.fit(np.asarray(Z, np.float64), np.asarray(Y[:, :d_used], np.float64))
    theta = gpr.kernel_.theta

    def run():
        if eval_gradient:
            value, grad = gpr.log_marginal_likelihood(theta, eval_gradient=True)
            return float(value), np.asarray(grad)
        return float(gpr.log_marginal_likelihood(theta)), np.full(3, np.nan)

    if eval_gradient:
        budget = f"N*N*d_used*8 B = {8 * n * n * d_used / 2**20:.0f} MiB <= max_bytes"
        scope = "full D" if d_used == d else f"FIRST {d_used} of {d} outputs ({budget})"
        note = (
            f"scikit-learn GPR(C*RBF+White, optimizer=None, alpha=0) fitted once; "
            f"log_marginal_likelihood(theta, eval_gradient=True) on {scope}; its gradient "
            f"materialises an (N, N, d_used) array; grad = dLML/dlog(variance, lengthscale, s2)."
        )
    else:
        note = (
            "scikit-learn GPR(C*RBF+White, optimizer=None, alpha=0) fitted once; "
            "log_marginal_likelihood(theta) value only, full D (grad is NaN)."
        )
    return PeerCase(
        name="sklearn" if eval_gradient else "sklearn-value",
        run=run,
        note=note,
        grad_convention="log_theta" if eval_gradient else "none",
        d_used=d_used,
    )


make_sklearn_value = functools.partial(make_sklearn, eval_gradient=False)


def _require_x64_for(dtype) -> None:
    """Refuse to build a JAX peer whose arithmetic would not be in ``dtype``."""
    want_x64 = np.dtype(dtype) == np.float64
    if bool(jax.config.jax_enable_x64) != want_x64:
        raise RuntimeError(
            f"{np.dtype(dtype).name} JAX peers need jax_enable_x64={want_x64} (x64 turns "
            "GPJax/tinygp float64 constants on, upcasting float32 data); use the CLI, which "
            "sets it from --dtype."
        )


def _compiled_jax_run(lml, params, args, grad_leaves, dtype) -> Callable[[], tuple[float, np.ndarray]]:
    """jit(value_and_grad(lml)) compiled once here; run() -> (value, grad_leaves(grads) as (3,)).

    lml(params, *args) -> scalar; grad_leaves(grads) -> the 3 scalar gradient leaves in
    (variance, lengthscale, noise) order.
    """
    value_and_grad = jax.jit(jax.value_and_grad(lml))

    def run():
        value, grads = value_and_grad(params, *args)
        return float(value), np.array([float(g) for g in grad_leaves(grads)])

    value, _ = value_and_grad(params, *args)  # compile outside the timed calls
    if value.dtype != np.dtype(dtype):
        raise RuntimeError(f"computed in {value.dtype}, asked for {np.dtype(dtype).name}")
    return run


def make_gpjax(Z, Y, variance, lengthscale, noise, dtype=np.float64) -> PeerCase:
    """GPJax 1.0: Prior(Zero, RBF) * Gaussian(obs_stddev), conjugate_mll vmapped over Y's columns.

    The idiom of gpx.fit_scipy / fit_lbfgs: eqx.partition(model, eqx.is_array), loss of the
    array leaves, jax.jit(jax.value_and_grad(loss)). The objective is single-output
    (Dataset.y of shape (N, 1)), so it is vmapped over the D columns of Y with the same model
    and summed; the Gram matrix and Cholesky do not depend on y, so vmap leaves them
    unbatched (one factorisation). Parameters are stored as softplus^{-1}; noise as obs_stddev.
    """
    _require_x64_for(dtype)
    as_dtype = functools.partial(jnp.asarray, dtype=dtype)
    kernel = gpx.kernels.RBF(lengthscale=as_dtype(lengthscale), variance=as_dtype(variance))
    prior = gpx.gps.Prior(mean_function=gpx.mean_functions.Zero(), kernel=kernel)
    model = prior * gpx.likelihoods.Gaussian(obs_stddev=as_dtype(math.sqrt(noise)))
    params, static = eqx.partition(model, eqx.is_array)

    def lml(params, X, Y):
        model = eqx.combine(params, static)
        per_output = jax.vmap(
            lambda y: gpx.objectives.conjugate_mll(model, gpx.Dataset(X=X, y=y[:, None])),
            in_axes=1,
        )(Y)
        return jnp.sum(per_output)

    def grad_leaves(grads):
        kernel = grads.prior.kernel
        return (
            kernel.variance._unconstrained,
            kernel.lengthscale._unconstrained,
            grads.likelihood.obs_stddev._unconstrained,
        )

    run = _compiled_jax_run(lml, params, (as_dtype(Z), as_dtype(Y)), grad_leaves, dtype)
    return PeerCase(
        name="gpjax",
        run=run,
        note=f"GPJax {gpx.__version__}: conjugate_mll vmapped over the D outputs under "
        "jit(value_and_grad) of eqx.partition'ed params (one Cholesky; Gram matrix by "
        "GPJax's pairwise-vmap kernel evaluation, an N x N x Q intermediate); Prior jitter "
        f"{GPJAX_JITTER:g} added to the diagonal; grad = dLML/d softplus^-1(variance, "
        "lengthscale, obs_stddev = sqrt(s2)).",
        grad_convention="gpjax_softplus",
        d_used=Y.shape[1],
        extra_diag=GPJAX_JITTER,
    )


def make_tinygp(Z, Y, variance, lengthscale, noise, dtype=np.float64) -> PeerCase:
    """tinygp 0.3: GaussianProcess(amp * ExpSquared(scale), Z, diag=s2), log-parameters.

    log_probability takes y of shape (N,) only: (N, D) fails to broadcast against the
    (N,) mean (and when D == N silently returns a wrong number), so the GP is built once per
    evaluation (its Cholesky lives in the solver) and log_probability vmapped over columns.
    """
    import tinygp  # the bench extra's: imported here so that the rest of this module needs only the test extra

    _require_x64_for(dtype)
    as_dtype = functools.partial(jnp.asarray, dtype=dtype)
    params = {
        "log_amp": as_dtype(math.log(variance)),
        "log_scale": as_dtype(math.log(lengthscale)),
        "log_diag": as_dtype(math.log(noise)),
    }

    def build_gp(params, X):
        kernel = jnp.exp(params["log_amp"]) * tinygp.kernels.ExpSquared(scale=jnp.exp(params["log_scale"]))
        return tinygp.GaussianProcess(kernel, X, diag=jnp.exp(params["log_diag"]))

    def lml(params, X, Y):
        return jnp.sum(jax.vmap(build_gp(params, X).log_probability, in_axes=1)(Y))

    def grad_leaves(grads):
        return grads["log_amp"], grads["log_scale"], grads["log_diag"]

    run = _compiled_jax_run(lml, params, (as_dtype(Z), as_dtype(Y)), grad_leaves, dtype)
    return PeerCase(
        name="tinygp",
        run=run,
        note=f"tinygp {tinygp.__version__}: GaussianProcess built once per call (one "
        "Cholesky), log_probability vmapped over the D outputs (it accepts (N,) only) "
        "under jit(value_and_grad) of log-parameters; grad = dLML/dlog(variance, "
        "lengthscale, s2).",
        grad_convention="log_theta",
        d_used=Y.shape[1],
    )


def make_gpllm(Z, Y, variance, lengthscale, noise, dtype=np.float64, path="gram", output_scales="shared") -> PeerCase:
    """gpllm: ``gp.value_and_grad`` (one Cholesky, hand-written VJP), targets prepared once.

    ``path="gram"`` factors Y Y^T once (a QR, not timed: it is per dataset, not per
    evaluation); ``"direct"`` solves against Y itself. ``output_scales="per_output"``:
    the profile likelihood with one scale per output (the direct path; its value is not
    Eq. 1's, so its agreement column compares different quantities). Gradient w.r.t.
    gpllm's unconstrained parameters u = softplus^{-1}(theta). ``flops``: :func:`gpllm_flops`.
    """
    from gpllm import gp
    from gpllm.gp.objective import prepare_targets

    params = jax.tree.map(
        lambda x: jnp.asarray(x, dtype),
        gp.params_from_values(gp.RBF(), {"variance": variance, "lengthscale": lengthscale}, noise),
    )
    Zj = jnp.asarray(Z, dtype)
    targets = jax.block_until_ready(prepare_targets(jnp.asarray(Y, dtype), path, output_scales))
    kernel = gp.RBF()

    def run():
        value, grad = gp.value_and_grad(kernel, params, Zj, targets)
        leaves = (grad.kernel["variance"], grad.kernel["lengthscale"], grad.noise)
        return float(value), np.array([float(x) for x in leaves])

    name = "gpllm-per-output" if output_scales == "per_output" else f"gpllm-{path}"
    return PeerCase(
        name,
        run,
        f"gpllm {path} path, {output_scales} output scales",
        grad_convention="softplus",
        d_used=Y.shape[1],
        flops=gpllm_flops(kernel, params, Zj, targets),
    )


def gpllm_flops(kernel, params, Z, targets) -> float:
    """FLOPs of one gpllm value+gradient as compiled: XLA's own count of its GEMMs and
    elementwise work (``cost_analysis``), plus the LAPACK calls it cannot see inside:
    potrf (N^3/3) and the triangular inverses of the diagonal blocks (nb^3 each)."""
    from gpllm.gp import blocked
    from gpllm.gp.objective import lml

    program = jax.jit(jax.value_and_grad(lambda p, z, t: lml(kernel, p, z, t).value))
    analysis = program.lower(params, Z, targets).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    n = Z.shape[0]
    edges = blocked.block_edges(n)
    return float(analysis["flops"]) + n**3 / 3 + sum((b - a) ** 3 for a, b in zip(edges, edges[1:]))


FACTORIES: dict[str, Callable[..., PeerCase]] = {
    "gpllm-gram": functools.partial(make_gpllm, path="gram"),
    "gpllm-direct": functools.partial(make_gpllm, path="direct"),
    "gpllm-per-output": functools.partial(make_gpllm, path="direct", output_scales="per_output"),
    "sklearn": make_sklearn,
    "sklearn-value": make_sklearn_value,
    "gpjax": make_gpjax,
    "tinygp": make_tinygp,
    "numpy": make_numpy,
}


def make_case(name: str, Z, Y, dtype=np.float64, max_bytes: int = DEFAULT_MAX_BYTES, **hypers) -> PeerCase:
    """FACTORIES[name] at HYPERS (overridable); max_bytes reaches the sklearn gradient case only."""
    hypers = {**HYPERS, **hypers}
    factory = FACTORIES[name]
    if name == "sklearn":
        factory = functools.partial(factory, max_bytes=max_bytes)
    return factory(Z, Y, dtype=dtype, **hypers)


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Timing:
    """Wall time of fn() (perf_counter), blocking on any JAX arrays it returns."""
    return time_calls_interleaved({"fn": fn}, repeats, warmup)["fn"]


def time_calls_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, Timing]:
    """time_call for several functions in alternation, so that each sees the same
    machine: on a shared machine the rate drifts over minutes."""
    for fn in fns.values():
        for _ in range(warmup):
            jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: Timing(float(np.median(t)), float(min(t)), tuple(t)) for name, t in times.items()}


#: GEMMs per interleaved round: one 2000^3 GEMM takes ~0.1 s, short enough for a burst of
#: other work on a shared machine to halve its measured rate.
GEMM_CALLS_PER_ROUND = 3


def jax_gemm(n: int, dtype, calls: int = 1) -> tuple[Callable[[], jax.Array], float]:
    """A jitted n x n x n jnp.matmul ready to call (``calls`` times back to back per
    call, so that one timing averages over them), and its GFLOP (calls x 2 n^3 / 1e9)."""
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.standard_normal((n, n)).astype(dtype)) for _ in range(2))
    matmul = jax.jit(jnp.matmul)

    def run():
        for _ in range(calls):
            out = jax.block_until_ready(matmul(a, b))
        return out

    return run, calls * 2.0 * n**3 / 1e9


def potrf_call(n: int, dtype) -> Callable[[], jax.Array]:
    """LAPACK's potrf on an (N, N) SPD matrix, jitted alone: the one call of a gpllm
    value+gradient that is not a GEMM (or a small block's solve)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, n)) / math.sqrt(n)
    A = jnp.asarray(X @ X.T + np.eye(n), dtype)
    potrf = jax.jit(lambda a: jax.lax.linalg.cholesky(a, symmetrize_input=False))
    return lambda: potrf(A)


def algorithm_floor_s(n: int, flops: float, potrf_s: float, gemm_gflops: float) -> float:
    """The algorithm's floor on this machine: its potrf as LAPACK runs it, and every
    other FLOP at the rate of the big GEMM."""
    return potrf_s + (flops - n**3 / 3) / (gemm_gflops * 1e9)


def gemm_rate(n: int = 2000, dtype=np.float64, repeats: int = 5) -> GemmRate:
    """GFLOP/s (2 n^3 / median time) of an n x n matmul, jitted jnp.matmul and np.dot.

    The jnp half is in ``dtype`` only when jax_enable_x64 allows it (float64 needs x64 on).
    """
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    matmul, gflop = jax_gemm(n, dtype)
    jax_s = time_call(matmul, repeats).median_s
    numpy_s = time_call(lambda: np.dot(a, b), repeats).median_s
    return GemmRate(gflop / jax_s, gflop / numpy_s, n, str(np.dtype(dtype)))


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_case(
    name: str,
    n: int,
    q: int,
    d: int,
    dtype=np.float64,
    repeats: int = 5,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    gemm_n: int | None = None,
) -> dict:
    """Build, warm and time one case in THIS process; returns the CLI's JSON record.

    peak_rss_bytes = process high-water mark after the case's first timed run minus the
    high-water mark after imports and data generation: what the case (factory,
    compilation, runs) added. It is only the case's own when this process ran nothing
    else: use run_isolated. With ``gemm_n``, the case's runs alternate with an
    n x n x n jnp.matmul (allocated after the peak is read) and the record gains
    ``gemm_gflops`` and ``gemm_all_s``: the GEMM rate under the same machine conditions
    as the case (``all_s[1:]`` and ``gemm_all_s`` are the same rounds); a
    gpllm case then also times :func:`lapack_primitives` in the same rounds
    (``primitives_s``, medians).
    """
    Z, Y = make_problem(n, q, d, seed, dtype)
    baseline = _max_rss_bytes()
    case = make_case(name, Z, Y, dtype=dtype, max_bytes=max_bytes)
    record = evaluate(case)  # the result reported, and a warm-up run
    first = time_call(case.run, 1, warmup=0)
    peak = _max_rss_bytes() - baseline
    more = max(repeats - 1, 1) if gemm_n else repeats - 1
    if gemm_n is None:
        rest = time_call(case.run, more, warmup=0).all_s if more else ()
    else:
        gemm, gflop = jax_gemm(gemm_n, dtype, calls=GEMM_CALLS_PER_ROUND)
        primitives = {"potrf": potrf_call(n, dtype)} if case.flops else {}
        timings = time_calls_interleaved({"case": case.run, "gemm": gemm, **primitives}, more)
        rest = timings["case"].all_s
        record |= {
            "gemm_n": gemm_n,
            "gemm_gflop": gflop,
            "gemm_gflops": gflop / timings["gemm"].median_s,
            "gemm_all_s": list(timings["gemm"].all_s),
        }
        if primitives:
            record |= {"potrf_s": timings["potrf"].median_s, "flops": case.flops}
    all_s = first.all_s + rest
    timing = Timing(float(np.median(all_s)), float(min(all_s)), all_s)
    return {
        "case": name,
        "n": n,
        "q": q,
        "d": d,
        "dtype": np.dtype(dtype).name,
        **record,
        "median_s": timing.median_s,
        "min_s": timing.min_s,
        "all_s": list(timing.all_s),
        "peak_rss_bytes": peak,
        "baseline_rss_bytes": baseline,
        "process_peak_rss_bytes": peak + baseline,
    }


def evaluate(case: PeerCase) -> dict:
    """One case.run() with what is needed to read it: value, grad (native), grad_theta, d_used..."""
    value, grad = case.run()
    return {
        "d_used": case.d_used,
        "value": value,
        "grad": [float(g) for g in grad],
        "grad_order": list(GRAD_ORDER),
        "grad_convention": case.grad_convention,
        "grad_theta": [float(g) for g in grad_to_theta(grad, case.grad_convention, **HYPERS)],
        "extra_diag": case.extra_diag,
        "note": case.note,
    }


def child_environment() -> dict[str, str]:
    """The environment every benchmark process runs in: this one, with gpllm's OpenBLAS
    spin limit (:mod:`gpllm.blas`) unless already set. Peers get it too, so that a ratio
    measures the code, not a BLAS setting."""
    from gpllm.blas import SPIN_EXPONENT, SPIN_VARIABLE

    return {**os.environ, SPIN_VARIABLE: os.environ.get(SPIN_VARIABLE, SPIN_EXPONENT)}


def run_isolated(
    name: str,
    n: int,
    q: int,
    d: int,
    dtype: str = "float64",
    repeats: int = 5,
    seed: int = 0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float | None = None,
    gemm_n: int | None = None,
) -> dict:
    """run_case in a fresh ``python -m benchmarks.peers`` process; its JSON record as a dict
    (``gemm_n``: see run_case).

    A case that fails inside the child (e.g. an unsupported dtype) comes back as
    {"case": ..., "error": ...}; a child that dies without a record (e.g. killed for memory)
    raises RuntimeError with its stderr.
    """
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.peers",
        "--case",
        name,
        "--n",
        str(n),
        "--q",
        str(q),
        "--d",
        str(d),
        "--dtype",
        dtype,
        "--repeats",
        str(repeats),
        "--seed",
        str(seed),
        "--max-bytes",
        str(max_bytes),
    ]
    if gemm_n is not None:
        cmd += ["--gemm-n", str(gemm_n)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=child_environment())
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def peak_rss_of(name: str, n: int, q: int, d: int, **kwargs) -> int:
    """Peak memory in bytes that one case adds, measured alone in a fresh process."""
    return run_isolated(name, n, q, d, **kwargs)["peak_rss_bytes"]


# --------------------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------------------


def _rel(a, b) -> float:
    """Max |a - b| relative to max |b| (componentwise ratios mislead for small components)."""
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _finite_difference_grad(Z, Y, hypers: dict, step: float = 1e-5) -> np.ndarray:
    """Central differences of numpy_reference_lml's value in each hyperparameter (relative step)."""
    grad = []
    for key in GRAD_ORDER:
        h = step * hypers[key]
        up, down = ({**hypers, key: hypers[key] + s} for s in (h, -h))
        lml_up, lml_down = (numpy_reference_lml(Z, Y, **h_)[0] for h_ in (up, down))
        grad.append((lml_up - lml_down) / (2 * h))
    return np.array(grad)


def selfcheck(n: int = 60, q: int = 5, d: int = 7, seed: int = 0) -> dict:
    """Assert every peer agrees with numpy_reference_lml after converting conventions.

    float64 in this process (value <= 1e-8 and gradient <= 1e-7 relative); the reference
    gradient against central differences (<= 1e-6); sklearn's reduced-D gradient path
    (forced by a tiny max_bytes); float32 JAX/NumPy peers in fresh processes (x64 off)
    against the float64 reference (<= 1e-4). Prints and returns the max relative diffs.
    """
    jax.config.update("jax_enable_x64", True)
    Z, Y = make_problem(n, q, d, seed)
    report = {}

    def check(label, record, tol_value, tol_grad):
        """record: evaluate()'s dict, compared with the reference on the same outputs and A."""
        noise = HYPERS["noise"] + record["extra_diag"]
        used = Y[:, : record["d_used"]]
        ref_value, ref_grad = numpy_reference_lml(Z, used, **{**HYPERS, "noise": noise})
        diffs = {"value": _rel(record["value"], ref_value)}
        if record["grad_convention"] != "none":
            diffs["grad"] = _rel(record["grad_theta"], ref_grad)
        report[label] = diffs
        shown = "  ".join(f"{key} {diff:.2e}" for key, diff in diffs.items())
        print(f"{label:24s} d_used={record['d_used']:<3d} {shown}")
        assert diffs["value"] <= tol_value, (label, diffs)
        assert diffs.get("grad", 0.0) <= tol_grad, (label, diffs)

    fd = _finite_difference_grad(Z, Y, HYPERS)
    report["numpy vs finite diff"] = {"grad": _rel(numpy_reference_lml(Z, Y, **HYPERS)[1], fd)}
    print(f"{'numpy vs finite diff':24s} grad {report['numpy vs finite diff']['grad']:.2e}")
    assert report["numpy vs finite diff"]["grad"] <= 1e-6

    for name in FACTORIES:
        check(f"{name} float64", evaluate(make_case(name, Z, Y)), 1e-8, 1e-7)
    reduced = evaluate(make_case("sklearn", Z, Y, max_bytes=8 * n * n * 3))
    assert reduced["d_used"] == 3
    check("sklearn float64 d<D", reduced, 1e-8, 1e-7)

    for name in ("gpjax", "tinygp", "numpy"):
        record = run_isolated(name, n, q, d, dtype="float32", repeats=1, seed=seed)
        check(f"{name} float32 (child)", record, 1e-4, 1e-4)
    print("selfcheck OK")
    return report


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--case", choices=sorted(FACTORIES))
    action.add_argument("--selfcheck", action="store_true")
    action.add_argument("--gemm", action="store_true", help="GEMM GFLOP/s at --n (default 2000)")
    parser.add_argument("--n", type=int, default=None, help="N (default 1400; 2000 for --gemm)")
    parser.add_argument("--q", type=int, default=100)
    parser.add_argument("--d", type=int, default=2000)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--gemm-n", type=int, default=None, help="alternate the case's runs with this GEMM")
    args = parser.parse_args(argv)

    if args.selfcheck:
        selfcheck()
        return 0
    # Before any array exists: float32 JAX users run with JAX's default (x64 off).
    jax.config.update("jax_enable_x64", args.dtype == "float64")
    dtype = np.dtype(args.dtype)
    if args.gemm:
        rate = gemm_rate(args.n or 2000, dtype, args.repeats)
        print(json.dumps(rate._asdict()))
        return 0
    try:
        record = run_case(
            args.case, args.n or 1400, args.q, args.d, dtype, args.repeats, args.seed, args.max_bytes, args.gemm_n
        )
    except (NotImplementedError, RuntimeError) as err:
        print(json.dumps({"case": args.case, "dtype": args.dtype, "error": str(err)}))
        return 1
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())

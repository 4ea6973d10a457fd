"""Prediction from one factor: mean, per-point variance and samples.

Conditioning on (Z, Y) factors A = K + s2 I = L L^T once and stores
alpha = A^{-1} Y (N, D). For test inputs Z* (M, Q), with V = L^{-1} K(Z, Z*):

    mean = K(Z*, Z) alpha                               (M, D)
    cov  = K(Z*, Z*) - V^T V   (+ s2 I with noise)      (M, M), shared by all D outputs

The same factor gives the exact leave-one-out predictions on the training points
(:func:`leave_one_out`), hyperparameters held fixed.

The outputs are independent given the kernel, so one variance per test point
serves every gene. With per-output scales (:mod:`objective`), output g's
covariance is c_g times that one, c_g = |L^{-1} y_g|^2 / N its fitted scale:
the variance is then (M, D).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gpllm.gp.cholesky import cholesky_with_jitter
from gpllm.gp.kernels import Kernel
from gpllm.gp.objective import (
    GPParams,
    OutputScales,
    check_output_scales,
    covariance,
    output_scales_of,
    params_like,
    values_of,
)


class Posterior(NamedTuple):
    """Everything prediction needs, computed once by :func:`condition`."""

    params: GPParams
    Z: jax.Array  # (N, Q) training inputs
    L: jax.Array  # (N, N) lower Cholesky factor of K + (s2 + jitter) I
    alpha: jax.Array  # (N, D) A^{-1} Y
    jitter: jax.Array  # () jitter the factorisation needed
    scales: jax.Array | None = None  # (D,) per-output scales c_g, or None (shared: Eq. 1)


def condition(
    kernel: Kernel, params: GPParams, Z: jax.Array, Y: jax.Array, output_scales: OutputScales = "shared"
) -> Posterior:
    """Factor A once and solve for alpha = A^{-1} Y; Z (N, Q), Y (N, D); with
    ``output_scales="per_output"`` also c_g = |L^{-1} y_g|^2 / N, (D,)."""
    params = params_like(params, Z)
    L, jitter = cholesky_with_jitter(covariance(kernel, params, Z))
    W = lax.linalg.triangular_solve(L, Y, left_side=True, lower=True)
    alpha = lax.linalg.triangular_solve(L, W, left_side=True, lower=True, transpose_a=True)
    scales = output_scales_of(W) if check_output_scales(output_scales) else None
    return Posterior(params, Z, L, alpha, jitter, scales)


def per_output(post: Posterior, point_values: jax.Array) -> jax.Array:
    """(M,) values shared by all outputs, as the posterior's outputs see them: (M, D)
    scaled by c_g with per-output scales, else unchanged."""
    return point_values if post.scales is None else point_values[:, None] * post.scales[None, :]


def _projection(kernel: Kernel, post: Posterior, Z_new: jax.Array):
    K_cross = kernel.gram(values_of(kernel, post.params).kernel, post.Z, Z_new)  # (N, M)
    V = lax.linalg.triangular_solve(post.L, K_cross, left_side=True, lower=True)
    return K_cross, V


def predict_mean(kernel: Kernel, post: Posterior, Z_new: jax.Array) -> jax.Array:
    """Posterior mean K(Z*, Z) A^{-1} Y, (M, D)."""
    return kernel.gram(values_of(kernel, post.params).kernel, Z_new, post.Z) @ post.alpha


def variance_floor(kernel: Kernel, post: Posterior, Z_new: jax.Array) -> jax.Array:
    """N eps k(z*, z*), (M,): below it, k** - |V[:, m]|^2 is rounding, not a variance."""
    kss = kernel.diag(values_of(kernel, post.params).kernel, Z_new)
    return post.Z.shape[0] * jnp.finfo(kss.dtype).eps * jnp.abs(kss)


def predict(
    kernel: Kernel, post: Posterior, Z_new: jax.Array, include_noise: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Mean (M, D) and variance v = max(diag(K**) - |V[:, m]|^2, floor) (+ s2): (M,) shared
    by all outputs, or c_g v, (M, D), with per-output scales.

    The latent variance is floored at :func:`variance_floor`, the smallest value the
    difference resolves: rounding can push it to zero or below for test points that
    coincide with training points, or with a kernel variance far above the noise.
    """
    values = values_of(kernel, post.params)
    K_cross, V = _projection(kernel, post, Z_new)
    mean = K_cross.T @ post.alpha
    latent = kernel.diag(values.kernel, Z_new) - jnp.sum(V * V, axis=0)
    var = jnp.maximum(latent, variance_floor(kernel, post, Z_new))
    if include_noise:
        var = var + values.noise
    return mean, per_output(post, var)


class LeaveOneOut(NamedTuple):
    """Leave-one-out predictions on the N training points, from one factor."""

    residual: jax.Array  # (N, D) y_i - mu_{-i}
    var: jax.Array  # (N,), or (N, D) with per-output scales: the variance of y_i given the others


def leave_one_out(post: Posterior, Y: jax.Array, refit_mean: bool = False) -> LeaveOneOut:
    """Exact leave-one-out residuals and variances of the N training outputs Y (N, D)
    that ``post`` was conditioned on, with A = K + s2 I, d = diag(A^{-1}):

        y_i - mu_{-i} = [A^{-1} Y]_i / d_i,   var_{-i} = 1 / d_i   (c_g / d_i per output g).

    ``refit_mean``: Y is centred by its training mean, which each held-out fit
    re-estimates without point i: the residual is then
    ([A^{-1} Y]_i + [A^{-1} 1]_i Y_i / (N - 1)) / d_i.
    """
    n = Y.shape[0]
    L_inv = lax.linalg.triangular_solve(post.L, jnp.eye(n, dtype=Y.dtype), left_side=True, lower=True)
    d = jnp.sum(L_inv * L_inv, axis=0)  # diag(A^{-1}), A^{-1} = L^{-T} L^{-1}
    numerator = post.alpha
    if refit_mean:
        a1 = L_inv.T @ jnp.sum(L_inv, axis=1)  # A^{-1} 1
        numerator = numerator + a1[:, None] * Y / (n - 1.0)
    return LeaveOneOut(numerator / d[:, None], per_output(post, 1.0 / d))


def predictive_covariance(kernel: Kernel, post: Posterior, Z_new: jax.Array, include_noise: bool = True) -> jax.Array:
    """Joint (M, M) covariance K** - V^T V (+ s2 I), shared by all outputs (output g's is c_g times it
    with per-output scales)."""
    values = values_of(kernel, post.params)
    _, V = _projection(kernel, post, Z_new)
    cov = kernel.gram(values.kernel, Z_new) - V.T @ V
    if include_noise:
        cov = cov + values.noise * jnp.eye(Z_new.shape[0], dtype=cov.dtype)
    return 0.5 * (cov + cov.T)


def sample(
    kernel: Kernel,
    post: Posterior,
    Z_new: jax.Array,
    key: jax.Array,
    n_samples: int = 1,
    include_noise: bool = True,
) -> jax.Array:
    """Joint draws from the predictive distribution, (n_samples, M, D).

    Each output gets independent draws from N(mean[:, d], cov) (c_d cov with per-output
    scales); the (M, M) covariance is factorised once (with jitter if the test points repeat).
    """
    mean = predict_mean(kernel, post, Z_new)
    chol, _ = cholesky_with_jitter(predictive_covariance(kernel, post, Z_new, include_noise))
    eps = jax.random.normal(key, (n_samples,) + mean.shape, dtype=mean.dtype)
    draws = jnp.einsum("ij,sjd->sid", chol, eps)
    if post.scales is not None:
        draws = draws * jnp.sqrt(post.scales)
    return mean[None] + draws

"""The paper's GP+LLM: a multi-output GP on gene embeddings, behind the model interface.

Profiles are centred by the training mean per gene before fitting, so the GP
models deviations from the "non-control mean" baseline and reverts to it far
from the training embeddings; prediction adds the mean back:

    Y_hat(Z*) = mean_train + K(Z*, Z) (K + s2 I)^{-1} (Y - mean_train)

Hyperparameters (one kernel shared by all genes) maximise Eq. 1 with optax.
The predictive variance is that of an observed profile (latent + noise),
shared by all genes, which is what NLL and interval coverage score.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gpllm import gp
from gpllm.gp.fit import FitResult
from gpllm.gp.kernels import RBF, Kernel
from gpllm.gp.objective import params_like
from gpllm.gp.posterior import Posterior
from gpllm.models.base import Prediction, check_fit_inputs, check_predict_inputs


class GPState(NamedTuple):
    """A fitted GP: the posterior factor, the per-gene offset and the fit's record."""

    posterior: Posterior
    offset: jax.Array  # (G,) training mean added back at prediction
    fit: FitResult


@dataclasses.dataclass(frozen=True)
class GPModel:
    """Multi-output GP regression on embeddings Z (N, Q) -> profiles Y (N, G).

    ``kernel`` defaults to the paper's RBF with one shared lengthscale; any
    :mod:`gpllm.gp.kernels` kernel works, e.g. one per embedding block via
    :class:`~gpllm.gp.kernels.Active`. ``fit_options`` go to :func:`gpllm.gp.fit`
    (``optimizer``, ``max_steps``, ``gtol``...), as a tuple of pairs so the
    model stays hashable. ``dtype`` (e.g. ``"float32"``) casts the inputs
    before fitting; None keeps theirs (float64 by default).
    """

    kernel: Kernel = RBF()
    center: bool = True
    fit_options: tuple[tuple[str, object], ...] = ()
    name: str = "gp"
    dtype: str | None = None

    def _offset(self, Y):
        return jnp.mean(Y, axis=0) if self.center else jnp.zeros(Y.shape[1], Y.dtype)

    def _cast(self, *arrays):
        return arrays if self.dtype is None else tuple(jnp.asarray(a, self.dtype) for a in arrays)

    def fit(self, Z_train, Y_train, params0: gp.GPParams | None = None) -> GPState:
        """Fit Z (N, Q), Y (N, G); ``params0`` warm-starts the optimiser (default: data-aware init)."""
        Z, Y = self._cast(*check_fit_inputs(Z_train, Y_train, min_rows=2))
        result = gp.fit(self.kernel, Z, Y - self._offset(Y), params0, **dict(self.fit_options))
        return self.condition(result.params, Z, Y, result)

    def condition(self, params: gp.GPParams, Z_train, Y_train, fit: FitResult | None = None) -> GPState:
        """The state for given hyperparameters, without optimising (e.g. a saved model's)."""
        Z, Y = self._cast(*check_fit_inputs(Z_train, Y_train, min_rows=2))
        offset = self._offset(Y)
        return GPState(gp.condition(self.kernel, params, Z, Y - offset), offset, fit)

    def usable_start(self, params: gp.GPParams, Z) -> bool:
        """Whether ``params`` are a sensible warm start for inputs Z (N, Q).

        A GP fitted on few points can settle on the plateau where the kernel
        couples no two inputs (e.g. an RBF lengthscale far below the distance
        between neighbours): it then predicts the training mean, and on more
        data the optimiser cannot leave that plateau, because the LML's
        gradient along the lengthscale vanishes there. Such params are
        rejected: each row's strongest off-diagonal correlation
        K_ij / sqrt(K_ii K_jj), averaged over rows, must reach 1e-3.
        """
        Z = jnp.asarray(self._cast(Z)[0])
        return bool(_mean_strongest_correlation(self.kernel, params.kernel, Z) >= 1e-3)

    def fit_predict_many(
        self, Z_train, Y_train, Z_test, params0: gp.GPParams | None = None
    ) -> tuple[FitResult, list[Prediction]]:
        """B equal-size datasets (e.g. the CV folds at one size) fitted, then each
        predicted at its own Z_test, in one compiled program: Z_train (B, N, Q),
        Y_train (B, N, G), Z_test (B, M, Q).

        Each dataset gets its own hyperparameters; ``params0`` (leaves with a
        leading B axis) warm-starts them. Returns the fits (leaves with a leading
        B axis) and B predictions: the numbers B separate :meth:`fit` and
        :meth:`predict` calls give, with one compile per shape instead of three.
        """
        Z, Y, Z_new = (jnp.asarray(a) for a in (Z_train, Y_train, Z_test))
        for b in range(Z.shape[0]):
            check_fit_inputs(Z[b], Y[b], min_rows=2)
        Z, Y, Z_new = self._cast(Z, Y, Z_new)
        offsets = jax.vmap(self._offset)(Y)
        result, mean, var = gp.fit_predict_batched(
            self.kernel, Z, Y - offsets[:, None, :], Z_new, params0, include_noise=True, **dict(self.fit_options)
        )
        return result, [Prediction(mean[b] + offsets[b], var[b]) for b in range(Z.shape[0])]

    def predict(self, state: GPState, Z_test) -> Prediction:
        Z = check_predict_inputs(state.posterior.Z.shape[1], Z_test, dtype=state.posterior.Z.dtype)
        mean, var = gp.predict(self.kernel, state.posterior, Z, include_noise=True)
        return Prediction(mean + state.offset, var)


@partial(jax.jit, static_argnums=0)
def _mean_strongest_correlation(kernel: Kernel, kernel_params, Z) -> jax.Array:
    """mean_i max_{j != i} |K_ij| / sqrt(K_ii K_jj) for Z (N, Q)."""
    K = kernel.gram(params_like(kernel_params, Z), Z)
    d = jnp.sqrt(jnp.clip(jnp.diag(K), jnp.finfo(Z.dtype).tiny))
    corr = jnp.abs(K) / d[:, None] / d[None, :]
    corr = jnp.where(jnp.eye(Z.shape[0], dtype=bool), 0.0, corr)
    return jnp.mean(jnp.max(corr, axis=1))

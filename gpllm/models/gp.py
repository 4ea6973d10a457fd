"""The paper's GP+LLM: a multi-output GP on gene embeddings, behind the model protocol.

Profiles are centred by the training mean per gene before fitting, so the GP
models deviations from the "non-control mean" baseline and reverts to it far
from the training embeddings; prediction adds the mean back:

    Y_hat(Z*) = mean_train + K(Z*, Z) (K + s2 I)^{-1} (Y - mean_train)

Hyperparameters (one kernel shared by all genes) maximise Eq. 1 with optax.
The predictive variance (M,) is that of an observed profile, latent + noise,

    var(z*) = k(z*, z*) - k*^T (K + s2 I)^{-1} k* + s2,

one value per test point shared by all genes (one kernel, one noise for all
outputs), which is what NLL, CRPS and interval coverage score. With
``options.output_scales="per_output"`` gene g's is c_g var(z*), (M, G), c_g its
fitted scale (:mod:`gpllm.gp.objective`). It leaves out the uncertainty of the
plug-in offset (the training mean, of variance ~ s2_g / N).

The ``heldout`` hook gives the exact leave-one-out predictions with the
hyperparameters held fixed and the offset re-estimated without point i, from
the same factor (A = K + s2 I, d = diag(A^{-1}), Yc = Y - offset):

    y_i - mu_{-i} = ([A^{-1} Yc]_i + [A^{-1} 1]_i Yc_i / (N - 1)) / d_i,   var_{-i} = 1 / d_i

(c_g / d_i for gene g with per-output scales).

Beyond ``fit`` / ``predict`` it implements the protocol's optional hooks
(:mod:`gpllm.models.base`): a record of the fitted hyperparameters (their
constrained values for people, their raw leaves for an exact restore), a
restore from it, and ``fit_predict_folds``: equal-size CV folds fitted,
predicted and held out (the leave-one-out pass, from the fit's own factor) in
one compiled program (warm-started from each fold's record at the next smaller
training size only with ``warm_start=True``).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gpllm import gp
from gpllm.errors import InputError
from gpllm.gp.api import default_batch_size
from gpllm.gp.fit import FitOptions, FitResult, initial_params
from gpllm.gp.kernels import RBF, Kernel
from gpllm.gp.memory import fold_fits_peak_bytes
from gpllm.gp.objective import params_like, params_shapes, prepare_targets, values_of
from gpllm.gp.posterior import Posterior, leave_one_out
from gpllm.gp.sharding import dataset_mesh
from gpllm.models.base import (
    Fold,
    FoldFit,
    HeldOut,
    Prediction,
    Record,
    check_fit_inputs,
    check_predict_inputs,
)
from gpllm.precision import float64_enabled

#: The recommended GP's fit options (``gp_scaled`` in :mod:`gpllm.models.registry`, on
#: the paper's RBF): one output scale per gene, so each gene's predictive variance is its
#: own, and a weak prior on log r (r = s2 / mean k(z, z); 95% within 0.014-0.7) that
#: only decides where the likelihood is flat, e.g. where ML-II on ~100 points would
#: interpolate (r ~ 1e-7) or drop the signal altogether. ``gp_scaled`` puts them on RBF;
#: ``gp_select`` (:mod:`gpllm.models.gp_select`) fits them on RBF and on RBF + Linear and keeps
#: the fit with the better leave-one-out density, since the linear part matches ridge at ~100
#: perturbations but, its RBF variance collapsing, costs ~0.01 Pearson top-20 at 1000.
SCALED_GP_FIT_OPTIONS = {"output_scales": "per_output", "noise_ratio_prior": (math.log(0.1), 1.0)}


class GPState(NamedTuple):
    """A fitted GP: the posterior factor, the per-gene offset and the fit's record."""

    posterior: Posterior
    offset: jax.Array  # (G,) training mean added back at prediction
    fit: FitResult | None


@dataclasses.dataclass(frozen=True)
class GPModel:
    """Multi-output GP regression on embeddings Z (N, Q) -> profiles Y (N, G).

    kernel: any :class:`~gpllm.gp.kernels.Kernel` (the paper's RBF with one
        shared lengthscale by default; one per embedding block via ``Active``;
        a user's own subclass with any parameter constraints).
    options: how Eq. 1 is maximised (:class:`~gpllm.gp.fit.FitOptions`: any
        optax optimiser, steps, tolerances).
    dtype: e.g. ``"float32"`` casts the inputs before fitting; None keeps theirs.
    fresh_start_below: in :meth:`fit_predict_folds`, a warm-started fit on fewer
        training perturbations also runs from the fresh data-aware start, in the
        same program, and each fold keeps the fit with the higher LML. Why: fits
        on ~100 perturbations can settle where the kernel carries almost no
        signal, and a warm start would carry that up the training sizes.
    float64_below: a float32 model fits folds of fewer training perturbations in
        float64 (where JAX's float64 is on). Why: from the data-aware start the
        LML climbs slowly off the low-signal region, and float32 cannot resolve
        that climb against 2000 outputs: measured on the synthetic K562 screen
        at n=100, float32 fits stopped 22-260 nats below the float64 optimum,
        with a kernel variance 10-40x smaller. Such small fits cost milliseconds.
    spread_folds: where this process sees several devices (e.g. GPUs),
        :meth:`fit_predict_many` spreads the folds over all of them
        (:mod:`gpllm.gp.sharding`); on one device it changes nothing.
    warm_start: in :meth:`fit_predict_folds`, start each fold from its fit at the next
        smaller training size (the ``starts`` the sweep passes). Off by default: a
        warm-started fit's optimum depends on which smaller sizes the grid holds (the
        LML has several optima at 200-400 perturbations), so a table's row at 1000
        would change with the grid; from the fixed data-aware start every fit depends
        on its own fold's data only.
    leave_one_out: :meth:`fit_predict_folds` also returns each fold's leave-one-out
        predictions (the sweep scores them); off where nothing reads them (``gpllm active``),
        which spares an N x N inverse factor per fit and its share of the compile.
    """

    kernel: Kernel = RBF()
    center: bool = True
    options: FitOptions = FitOptions()
    name: str = "gp"
    dtype: str | None = None
    fresh_start_below: int = 300
    float64_below: int = 300
    spread_folds: bool = True
    warm_start: bool = False
    leave_one_out: bool = True

    def __post_init__(self):
        if not isinstance(self.kernel, Kernel):
            raise InputError(f"GPModel kernel must be a gpllm.gp.Kernel, got {type(self.kernel).__name__}")
        if not isinstance(self.options, FitOptions):
            raise InputError(f"GPModel options must be a gp.FitOptions, got {type(self.options).__name__}")
        if self.dtype not in (None, "float32", "float64"):
            raise InputError(f"GPModel dtype must be 'float32', 'float64' or None, got {self.dtype!r}")

    #: Equal-size folds share one compiled program (:meth:`fit_predict_folds`).
    batches_folds = True

    @property
    def zero_padding_invariant(self) -> bool:
        return self.kernel.zero_padding_invariant

    def _offset(self, Y):
        return jnp.mean(Y, axis=0) if self.center else jnp.zeros(Y.shape[1], Y.dtype)

    def _cast(self, *arrays):
        return arrays if self.dtype is None else tuple(jnp.asarray(a, self.dtype) for a in arrays)

    def _precision_for(self, n_train: int) -> GPModel:
        """This model, or its float64 twin where ``float64_below`` says so for ``n_train``."""
        if self.dtype == "float32" and n_train < self.float64_below and float64_enabled():
            return dataclasses.replace(self, dtype="float64")
        return self

    def peak_bytes(self, n_train: int, n_genes: int, width: int, n_folds: int) -> int:
        """Estimated peak bytes of :meth:`fit_predict_folds` on ``n_folds`` folds of Z (N, Q = width),
        Y (N, G), in the fit's dtype (:func:`gpllm.gp.memory.fold_fits_peak_bytes`)."""
        model = self._precision_for(n_train)
        dtype = np.dtype(model.dtype or jnp.result_type(float))
        per_output = self.options.output_scales == "per_output"
        at_once = default_batch_size(n_folds)
        return fold_fits_peak_bytes(n_train, n_genes, width, dtype, n_folds, at_once, per_output=per_output)

    def fit(self, Z_train, Y_train, params0: gp.GPParams | None = None) -> GPState:
        """Fit Z (N, Q), Y (N, G); raw ``params0`` warm-starts the optimiser (default: data-aware init)."""
        if (twin := self._precision_for(len(Z_train))) is not self:
            return twin.fit(Z_train, Y_train, params0)
        Z, Y = self._cast(*check_fit_inputs(Z_train, Y_train, min_rows=2))
        result = gp.fit(self.kernel, Z, Y - self._offset(Y), params0=params0, options=self.options)
        return self.condition(result.params, Z, Y, result)

    @property
    def per_output(self) -> bool:
        """Whether each gene has its own output scale (``options.output_scales``)."""
        return self.options.output_scales == "per_output"

    def condition(self, params: gp.GPParams, Z_train, Y_train, fit: FitResult | None = None) -> GPState:
        """The state for given raw hyperparameters, without optimising (e.g. a restored model's)."""
        Z, Y = self._cast(*check_fit_inputs(Z_train, Y_train, min_rows=2))
        offset = self._offset(Y)
        post = gp.condition(self.kernel, params, Z, Y - offset, output_scales=self.options.output_scales)
        return GPState(post, offset, fit)

    def predict(self, state: GPState, Z_test) -> Prediction:
        Z = check_predict_inputs(state.posterior.Z.shape[1], Z_test, dtype=state.posterior.Z.dtype)
        mean, var = gp.predict(self.kernel, state.posterior, Z, include_noise=True)
        return Prediction(mean + state.offset, var)

    def heldout(self, state: GPState, Z_train, Y_train) -> HeldOut:
        """Leave-one-out residuals (N, G) and variances (N,), or (N, G) with per-output
        scales, in closed form (module docstring)."""
        Y = jnp.asarray(Y_train, state.offset.dtype)
        return _heldout(state.posterior, Y - state.offset, self.center)

    # ------------------------------------------------------------ record / restore
    def record(self, state: GPState) -> dict:
        """The fitted hyperparameters: constrained values (``kernel``, ``noise``), the exact
        raw leaves (``raw``), and the fit's LML, steps and convergence."""
        params = state.posterior.params
        return _fit_record(self.kernel, params, state.fit)

    def params_from_record(self, record: Record, Z) -> gp.GPParams:
        """Raw hyperparameters from :meth:`record`'s ``raw`` leaves (exact), for inputs Z
        (N, Q), which fix the kernel's parameter shapes; InputError if they do not fit."""
        Z = jnp.asarray(Z)
        n, q = Z.shape
        like = params_shapes(self.kernel, n, q, Z.dtype)
        expected = jax.tree.leaves(like)
        try:
            leaves = [np.asarray(x, np.float64) for x in record["raw"]]
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{self.name}: the record holds no raw hyperparameters ({err!r})") from None
        shapes = [np.shape(x) for x in leaves]
        if shapes != [tuple(e.shape) for e in expected]:
            raise InputError(
                f"{self.name}: the record's hyperparameter shapes {shapes} do not fit kernel "
                f"{self.kernel!r} on {Z.shape[1]} input columns ({[tuple(e.shape) for e in expected]})"
            )
        return jax.tree.unflatten(jax.tree.structure(like), [jnp.asarray(x) for x in leaves])

    def restore(self, record: Record, Z_train, Y_train) -> GPState:
        """Recondition on the recorded hyperparameters (no optimisation)."""
        return self.condition(self.params_from_record(record, Z_train), Z_train, Y_train)

    # ------------------------------------------------------------ CV folds at once
    def usable_start(self, params: gp.GPParams, Z) -> bool:
        """Whether raw ``params`` are a sensible warm start for inputs Z (N, Q).

        A GP fitted on few points can settle on the plateau where the kernel
        couples no two inputs (e.g. an RBF lengthscale far below the distance
        between neighbours): it then predicts the training mean, and on more
        data the optimiser cannot leave that plateau, because the LML's
        gradient along the lengthscale vanishes there. Such params are
        rejected: each row's strongest off-diagonal correlation
        K_ij / sqrt(K_ii K_jj), averaged over rows, must reach 1e-3.
        """
        Z = jnp.asarray(self._cast(Z)[0])
        return bool(_mean_strongest_correlation(self.kernel, params, Z) >= 1e-3)

    def fresh_start(self, Z, Y) -> gp.GPParams:
        """The data-aware raw start a fit on Z (N, Q), Y (N, G) takes without a warm start."""
        Z, Y = (jnp.asarray(a) for a in self._cast(Z, Y - np.mean(Y, axis=0)))
        return initial_params(self.kernel, Z, Y, prepare_targets(Y, self.options.path, self.options.output_scales))

    def fit_predict_many(
        self, Z_train, Y_train, Z_test, params0: gp.GPParams | None = None
    ) -> tuple[FitResult, list[Prediction], list[HeldOut | None]]:
        """B equal-size datasets fitted, then each predicted at its own Z_test, in one
        compiled program: Z_train (B, N, Q), Y_train (B, N, G), Z_test (B, M, Q).

        Each dataset gets its own hyperparameters; raw ``params0`` (leaves with a
        leading B axis) warm-starts them. Returns the fits (NumPy leaves with a
        leading B axis), B predictions and B leave-one-out predictions on the training
        points (None each without ``leave_one_out``): the numbers B separate :meth:`fit`,
        :meth:`predict` and :meth:`heldout` calls give, from one program per shape, fetched
        from the device at once.
        """
        Z, Y, Z_new = (jnp.asarray(a) for a in (Z_train, Y_train, Z_test))
        for z, y in zip(np.asarray(Z), np.asarray(Y)):  # host views: no slicing program per shape
            check_fit_inputs(z, y, min_rows=2)
        Z, Y, Z_new = self._cast(Z, Y, Z_new)
        offsets = jax.vmap(self._offset)(Y)
        devices = jax.local_devices()
        mesh = dataset_mesh(devices) if self.spread_folds and len(devices) > 1 else None
        result, mean, var, *loo = jax.device_get(
            gp.fit_predict_batched(
                self.kernel,
                Z,
                Y - offsets[:, None, :],
                Z_new,
                params0=params0,
                options=self.options,
                include_noise=True,
                leave_one_out=("refitted_mean" if self.center else "zero_mean") if self.leave_one_out else None,
                mesh=mesh,
            )
        )
        offsets = np.asarray(offsets)
        predictions = [Prediction(mean[b] + offsets[b], var[b]) for b in range(len(mean))]
        heldouts = [HeldOut(loo[0].residual[b], loo[0].var[b]) if loo else None for b in range(len(mean))]
        return result, predictions, heldouts

    def fit_predict_folds(self, folds: Sequence[Fold], starts: Sequence[Record | None] | None = None) -> list[FoldFit]:
        """Every fold fitted and predicted; equal-size folds in one compiled program.

        ``starts``: each fold's record at the next smaller training size, used only
        with ``warm_start``. A fold starts from it when it is a :meth:`usable_start`,
        else from the fresh start; below ``fresh_start_below`` training perturbations
        a warm-started fit also runs from the fresh start and keeps the higher final LML.
        """
        starts = list(starts) if starts is not None and self.warm_start else [None] * len(folds)
        if (twin := self._precision_for(max(len(f.Z_train) for f in folds))) is not self:
            return twin.fit_predict_folds(folds, starts)
        if len({len(f.Z_train) for f in folds}) != 1:
            out = []
            for fold, start in zip(folds, starts):
                params0 = self._warm_start(start, fold.Z_train)
                state = self.fit(fold.Z_train, fold.Y_train, params0)
                heldout = self.heldout(state, fold.Z_train, fold.Y_train) if self.leave_one_out else None
                out.append(FoldFit(self.predict(state, fold.Z_test), self.record(state), heldout))
            return out
        # Stacked straight in the fit's dtype, fold by fold (no float64 stack first): at N=1400 each
        # float64 copy of Y_b is 112 MB, at N=7,816 and 8,000 genes 2.5 GB.
        dtype = self.dtype or np.result_type(*(f.Y_train.dtype for f in folds), float)
        Z_b = np.stack([f.Z_train for f in folds], dtype=dtype)
        Y_b = np.stack([f.Y_train for f in folds], dtype=dtype)
        Z_test_b = _stack_rows([f.Z_test for f in folds])
        params0 = None
        if any(s is not None for s in starts):
            params0 = _stack_params(
                [self._warm_start(s, Z_b[b]) or self.fresh_start(Z_b[b], Y_b[b]) for b, s in enumerate(starts)]
            )
        if params0 is not None and Z_b.shape[1] < self.fresh_start_below:
            fits, padded, heldouts = self._fit_from_better_start(Z_b, Y_b, Z_test_b, params0)
        else:
            fits, padded, heldouts = self.fit_predict_many(Z_b, Y_b, Z_test_b, params0)
        out = []
        for b, (fold, pred, heldout) in enumerate(zip(folds, padded, heldouts)):
            m = len(fold.Z_test)
            fit_b = jax.tree.map(operator.itemgetter(b), fits)
            record = _fit_record(self.kernel, fit_b.params, fit_b)
            assert pred.var is not None  # a GP always predicts a variance
            out.append(FoldFit(Prediction(pred.mean[:m], pred.var[:m]), record, heldout))
        return out

    def _warm_start(self, start: Record | None, Z) -> gp.GPParams | None:
        if not start:
            return None
        params = self.params_from_record(start, Z)
        return params if self.usable_start(params, Z) else None

    def _fit_from_better_start(self, Z_b, Y_b, Z_test_b, params0: gp.GPParams):
        """:meth:`fit_predict_many` from ``params0`` and from the fresh start, both in one
        program; per fold, the fit with the higher final LML (a NaN one never wins)."""
        B = Z_b.shape[0]
        fresh = _stack_params([self.fresh_start(Z_b[b], Y_b[b]) for b in range(B)])
        both = jax.tree.map(lambda w, f: np.concatenate([w, f]), params0, fresh)

        def twice(a: np.ndarray) -> np.ndarray:
            return np.concatenate([a, a])

        fits, padded, heldouts = self.fit_predict_many(twice(Z_b), twice(Y_b), twice(Z_test_b), both)
        lml = np.asarray(fits.lml, np.float64)
        warm_lml, fresh_lml = lml[:B], lml[B:]
        take_fresh = np.isfinite(fresh_lml) & (~np.isfinite(warm_lml) | (fresh_lml > warm_lml))
        index = np.arange(B) + B * take_fresh
        return jax.tree.map(lambda x: x[index], fits), [padded[i] for i in index], [heldouts[i] for i in index]


@partial(jax.jit, static_argnums=2)
def _heldout(post: Posterior, Yc: jax.Array, center: bool) -> HeldOut:
    return HeldOut(*leave_one_out(post, Yc, refit_mean=center))


def _fit_record(kernel: Kernel, params: gp.GPParams, fit: FitResult | None) -> dict:
    def as_list(x) -> list:
        return np.asarray(x, np.float64).tolist()

    values = values_of(kernel, params)
    out = {
        "kernel": jax.tree.map(as_list, values.kernel),
        "noise": as_list(values.noise),
        "raw": [as_list(x) for x in jax.tree.leaves(params)],
    }
    if fit is not None:
        out.update(lml=float(fit.lml), n_steps=int(fit.n_steps), converged=bool(fit.converged))
    return out


def _stack_params(params: Sequence[gp.GPParams]) -> gp.GPParams:
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x, np.float64) for x in xs]), *params)


def _stack_rows(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """(B, M_max, Q): each block's rows, the shorter ones padded by repeating their first row."""
    m = max(len(b) for b in blocks)
    return np.stack([np.concatenate([b, np.repeat(b[:1], m - len(b), axis=0)]) for b in blocks])


@partial(jax.jit, static_argnums=0)
def _mean_strongest_correlation(kernel: Kernel, params: gp.GPParams, Z) -> jax.Array:
    """mean_i max_{j != i} |K_ij| / sqrt(K_ii K_jj) for Z (N, Q)."""
    K = kernel.gram(values_of(kernel, params_like(params, Z)).kernel, Z)
    d = jnp.sqrt(jnp.clip(jnp.diag(K), jnp.finfo(Z.dtype).tiny))
    corr = jnp.abs(K) / d[:, None] / d[None, :]
    corr = jnp.where(jnp.eye(Z.shape[0], dtype=bool), 0.0, corr)
    return jnp.mean(jnp.max(corr, axis=1))

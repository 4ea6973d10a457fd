"""A GP whose kernel is chosen per fit by its leave-one-out predictive density (``gp_select``).

The built-in ``gp_select`` fits two GPs on each training fold, both with per-gene output
scales and the weak prior on log r of ``gp_scaled`` (:data:`~gpllm.models.gp.SCALED_GP_FIT_OPTIONS`):

- ``rbf``: the paper's RBF kernel (``gp_scaled`` itself);
- ``rbf+linear``: RBF + Linear, which contains Bayesian ridge on the embedding;

and keeps, per fold, the one whose exact leave-one-out predictions on the training
fold (:meth:`GPModel.heldout <gpllm.models.gp.GPModel.heldout>`: hyperparameters held,
offset re-estimated) have the lower mean negative log density over all N x G entries,

    LOO-NLL = 1/(N G) sum_{i, g} [ 1/2 log(2 pi v_ig) + r_ig^2 / (2 v_ig) ],

r_ig = y_ig - mu_{-i,g} and v_ig its variance (Rasmussen & Williams 2006, Sec. 5.4.2).

Why LOO and not the marginal likelihood: RBF + Linear contains RBF (linear variance 0),
so its maximised likelihood is at least RBF's up to optimiser tolerance, and the evidence
picks it nearly always. On the synthetic default's K562 screen at 1000 training
perturbations it did, while its linear part took 97% of the prior variance and its test
Pearson top-20 fell 0.01-0.015 to ridge's. The LOO density scores each fit on the task
the sweep measures, predicting perturbations the fit has not seen, and it is the
criterion ridge tunes its own penalty by. Both come from factors the fit makes anyway.

Cost: the two fits, about twice ``gp_scaled``'s; one compile per kernel and shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from gpllm.errors import InputError
from gpllm.gp.fit import FitOptions
from gpllm.gp.kernels import RBF, Linear
from gpllm.models.base import Fold, FoldFit, HeldOut, Prediction, Record
from gpllm.models.gp import SCALED_GP_FIT_OPTIONS, GPModel, GPState

#: The record key naming the kernel a fit chose, and the one holding every candidate's LOO-NLL.
CHOICE_KEY = "kernel_choice"
SCORES_KEY = "loo_nll"


def loo_nll(heldout: HeldOut) -> float:
    """Mean negative log leave-one-out density over all entries of residuals r (N, G) with
    variances v broadcastable to (N, G): mean of 1/2 log(2 pi v) + r^2 / (2 v); +inf
    where it is not finite (a fit that cannot score is never chosen)."""
    residual = np.asarray(heldout.residual, np.float64)
    var = np.broadcast_to(np.asarray(heldout.var, np.float64).reshape(len(residual), -1), residual.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(np.mean(0.5 * np.log(2.0 * np.pi * var) + 0.5 * residual**2 / var))
    return value if np.isfinite(value) else np.inf


class SelectedState(NamedTuple):
    """A fit of :class:`LOOSelectedGP`: the chosen candidate's index and state, and each
    candidate's LOO-NLL (in candidate order)."""

    choice: int
    inner: GPState
    scores: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class LOOSelectedGP:
    """Fits every candidate GP and keeps, per fit, the lowest LOO-NLL (module docstring).

    candidates: GPModels with distinct names (the name is what a record stores);
    ties and all-infinite scores keep the first. name: the model's name in tables.
    """

    candidates: tuple[GPModel, ...]
    name: str = "gp_select"

    def __post_init__(self):
        object.__setattr__(self, "candidates", tuple(self.candidates))
        if not self.candidates or not all(isinstance(c, GPModel) for c in self.candidates):
            raise InputError(f"{self.name}: candidates must be one or more GPModels, got {self.candidates!r}")
        names = [c.name for c in self.candidates]
        if len(set(names)) != len(names):
            raise InputError(f"{self.name}: candidate names must be distinct, got {names}")

    #: Each candidate's folds share one compiled program, as a GPModel's.
    batches_folds = True

    @property
    def zero_padding_invariant(self) -> bool:
        return all(c.zero_padding_invariant for c in self.candidates)

    def peak_bytes(self, n_train: int, n_genes: int, width: int, n_folds: int) -> int:
        """The largest candidate's :meth:`GPModel.peak_bytes`: the candidates are fitted one after another."""
        return max(c.peak_bytes(n_train, n_genes, width, n_folds) for c in self.candidates)

    def _chosen(self, scores: Sequence[float]) -> int:
        return int(np.argmin(scores))

    def fit(self, Z_train, Y_train) -> SelectedState:
        """Every candidate fitted on Z (N, Q), Y (N, G); the state of the lowest LOO-NLL."""
        states = [c.fit(Z_train, Y_train) for c in self.candidates]
        scores = tuple(loo_nll(c.heldout(s, Z_train, Y_train)) for c, s in zip(self.candidates, states))
        choice = self._chosen(scores)
        return SelectedState(choice, states[choice], scores)

    def predict(self, state: SelectedState, Z_test) -> Prediction:
        return self.candidates[state.choice].predict(state.inner, Z_test)

    def heldout(self, state: SelectedState, Z_train, Y_train) -> HeldOut:
        return self.candidates[state.choice].heldout(state.inner, Z_train, Y_train)

    def _record(self, choice: int, inner: Record, scores: Sequence[float]) -> dict:
        names = [c.name for c in self.candidates]
        return {**inner, CHOICE_KEY: names[choice], SCORES_KEY: dict(zip(names, map(float, scores)))}

    def record(self, state: SelectedState) -> dict:
        """The chosen candidate's record, its name (``kernel_choice``) and every LOO-NLL (``loo_nll``)."""
        inner = self.candidates[state.choice].record(state.inner)
        return self._record(state.choice, inner, state.scores)

    def _index(self, record: Record) -> int:
        names = [c.name for c in self.candidates]
        chosen = record.get(CHOICE_KEY) if isinstance(record, Mapping) else None
        if chosen not in names:
            raise InputError(f"{self.name}: the record's {CHOICE_KEY!r} is {chosen!r}, not one of {names}")
        return names.index(chosen)

    def restore(self, record: Record, Z_train, Y_train) -> SelectedState:
        """The recorded candidate reconditioned on its recorded hyperparameters (no optimisation)."""
        choice = self._index(record)
        inner = self.candidates[choice].restore(record, Z_train, Y_train)
        scores = tuple(record.get(SCORES_KEY, {}).get(c.name, np.inf) for c in self.candidates)
        return SelectedState(choice, inner, scores)

    def fit_predict_folds(self, folds: Sequence[Fold], starts: Sequence[Record | None] | None = None) -> list[FoldFit]:
        """Each candidate's batched :meth:`GPModel.fit_predict_folds`, then per fold the lowest
        LOO-NLL. A fold's start (its record at a smaller size) goes to the candidate it names."""
        starts = list(starts) if starts is not None else [None] * len(folds)
        by_candidate = [
            c.fit_predict_folds(folds, [s if s and s.get(CHOICE_KEY) == c.name else None for s in starts])
            for c in self.candidates
        ]
        out = []
        for fits in zip(*by_candidate):
            scores = [loo_nll(f.heldout) for f in fits]
            choice = self._chosen(scores)
            out.append(fits[choice]._replace(record=self._record(choice, fits[choice].record, scores)))
        return out


def rbf_or_rbf_linear(dtype: str | None = None, **model_options: Any) -> LOOSelectedGP:
    """``gp_select``: RBF and RBF + Linear, both with ``gp_scaled``'s fit options, chosen by LOO-NLL;
    ``dtype`` and ``model_options`` (GPModel fields) apply to both."""
    options = FitOptions(**SCALED_GP_FIT_OPTIONS)
    kernels = {"rbf": RBF(), "rbf+linear": RBF() + Linear()}
    return LOOSelectedGP(
        tuple(
            GPModel(kernel=kernel, options=options, name=name, dtype=dtype, **model_options)
            for name, kernel in kernels.items()
        )
    )

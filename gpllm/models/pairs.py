"""Models of two-gene perturbations: the additive baseline, pair GPs, and summed-embedding kNN / ridge.

Every pair model follows one small protocol, the pair analogue of
:mod:`gpllm.models.base`'s, on responses to control (delta = Y - ctrl)::

    state = model.fit(Z, train, delta)      # Z (n, Q): one embedding row per gene
                                            # train: Conditions (N), delta (N, G)
    pred = model.predict(state, test)       # Prediction, mean (M, G) deltas, var (M,) or None

A :class:`Conditions` names each condition's genes by their row in Z: a
single {a} has ``second = -1``, a pair {a, b} both. The embedding of every
gene is known up front (it is unsupervised); which singles and pairs were
measured is what training sees.

* :class:`AdditiveBaseline`: delta_a + delta_b, from the measured training
  singles where present, else from a single-gene model on the embedding
  (none given: a clear error naming the pairs that need it).
* :class:`PairGP`: one GP over singles and pairs with
  :class:`~gpllm.gp.pair_kernels.PairKernel` (additive + interaction).
* :class:`ResidualPairGP`: the additive baseline plus a GP on the training
  pairs' residual over it, which reverts to the additive model far from them.
* :class:`SummedEmbedding`: any single-gene model (kNN, ridge, ...) on
  z_a + z_b (z_a for a single).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from gpllm.errors import DataError, InputError, ShapeError
from gpllm.gp.fit import FitOptions
from gpllm.gp.kernels import RBF, Constant, Kernel
from gpllm.gp.pair_kernels import PairKernel, pair_inputs
from gpllm.models.base import Model, Prediction, check_fit_inputs, record_of
from gpllm.models.gp import GPModel
from gpllm.models.knn import KNN
from gpllm.models.ridge import Ridge


class Conditions(NamedTuple):
    """N conditions over the rows of a gene table Z (n, Q).

    first : int (N,) row of the (first) gene.  second : int (N,) row of the
    second gene of a pair, -1 for a single.  names : (N,) condition names, for messages.
    """

    first: np.ndarray
    second: np.ndarray
    names: tuple[str, ...]

    @property
    def is_pair(self) -> np.ndarray:
        return self.second >= 0

    def take(self, rows) -> Conditions:
        """The conditions at ``rows`` (int indices or a bool mask)."""
        idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        return Conditions(self.first[idx], self.second[idx], tuple(self.names[i] for i in idx))

    @classmethod
    def from_names(cls, names, gene_rows: dict[str, int], sep: str = "+") -> Conditions:
        """Conditions from names ('A' or 'A+B') and gene -> row; InputError names an unknown gene."""
        first, second = [], []
        for name in names:
            genes = name.split(sep)
            unknown = [g for g in genes if g not in gene_rows]
            if unknown or len(genes) > 2:
                raise InputError(
                    f"condition {name!r}: " + (f"no embedding row for {unknown}" if unknown else "more than two genes")
                )
            first.append(gene_rows[genes[0]])
            second.append(gene_rows[genes[1]] if len(genes) == 2 else -1)
        return cls(np.asarray(first, np.int64), np.asarray(second, np.int64), tuple(names))


def _checked(Z, conditions: Conditions, delta=None):
    """Z (n, Q) float and the conditions' rows inside it; delta (N, G) rows match."""
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ShapeError(f"Z {Z.shape} must be (n genes, Q)")
    rows = np.concatenate([conditions.first, conditions.second[conditions.is_pair]])
    if rows.size and (rows.min() < 0 or rows.max() >= Z.shape[0]):
        raise InputError(f"conditions name gene rows outside Z's {Z.shape[0]}")
    same = conditions.is_pair & (conditions.first == conditions.second)
    if same.any():
        bad = [conditions.names[i] for i in np.flatnonzero(same)]
        raise InputError(f"pair(s) {bad[:5]} name one gene twice")
    if delta is not None:
        delta = np.asarray(delta)
        if delta.ndim != 2 or delta.shape[0] != len(conditions.first):
            raise ShapeError(f"delta {delta.shape} must be (N, G) with N = {len(conditions.first)} conditions")
    return Z


def summed(Z, conditions: Conditions) -> np.ndarray:
    """(N, Q) z_a + z_b per pair, z_a per single."""
    second = np.where(conditions.is_pair, conditions.second, 0)
    return Z[conditions.first] + conditions.is_pair[:, None] * Z[second]


def paired(Z, conditions: Conditions):
    """:func:`~gpllm.gp.pair_kernels.pair_inputs` [z_a, z_b, w] (N, 2Q + 1) of the conditions."""
    second = np.where(conditions.is_pair, conditions.second, conditions.first)
    return pair_inputs(Z[conditions.first], Z[second], conditions.is_pair)


# --------------------------------------------------------------------- additive
class AdditiveState(NamedTuple):
    """Each gene's single delta (n, G), where it comes from, and the single-gene fit."""

    single: np.ndarray
    measured: np.ndarray  # (n,) bool: a training single measured it
    predicted: np.ndarray  # (n,) bool: the single-gene model predicted it
    single_state: Any


@dataclasses.dataclass(frozen=True)
class AdditiveBaseline:
    """delta_ab = delta_a + delta_b (Ahlmann-Eltze et al.'s hard-to-beat model).

    delta_a is the mean measured training single of a (averaged if repeated),
    else ``single_model``'s prediction from a's embedding, fitted on the
    training singles (any :mod:`gpllm.models.base` model; None: such a pair is
    a DataError naming it).
    """

    single_model: Model | None = GPModel()
    name: str = "additive"

    def fit(self, Z, train: Conditions, delta) -> AdditiveState:
        Z = _checked(Z, train, delta)
        delta = np.asarray(delta, dtype=np.float64)
        singles = ~train.is_pair
        n, G = Z.shape[0], delta.shape[1]
        total = np.zeros((n, G))
        count = np.bincount(train.first[singles], minlength=n).astype(float)
        np.add.at(total, train.first[singles], delta[singles])
        measured = count > 0
        single = np.where(measured[:, None], total / np.maximum(count, 1)[:, None], 0.0)
        state = None
        predicted = np.zeros(n, bool)
        if self.single_model is not None and (~measured).any():
            if measured.sum() < 2:
                raise DataError(f"{self.name}: {int(measured.sum())} measured single(s); the single-gene model needs 2")
            state = self.single_model.fit(Z[measured], single[measured])
            single[~measured] = np.asarray(self.single_model.predict(state, Z[~measured]).mean)
            predicted = ~measured
        return AdditiveState(single, measured, predicted, state)

    def predict(self, state: AdditiveState, test: Conditions) -> Prediction:
        known = state.measured | state.predicted
        second = np.where(test.is_pair, test.second, test.first)
        lacking = ~known[test.first] | (test.is_pair & ~known[second])
        if lacking.any():
            bad = [test.names[i] for i in np.flatnonzero(lacking)]
            raise DataError(
                f"{self.name}: {len(bad)} condition(s) need a single that was not measured in training and "
                f"no single-gene model predicts it: {bad[:5]}"
            )
        mean = state.single[test.first] + test.is_pair[:, None] * state.single[second]
        return Prediction(jnp.asarray(mean), None)

    def record(self, state: AdditiveState) -> dict:
        return {"n_singles_measured": int(state.measured.sum()), "n_singles_predicted": int(state.predicted.sum())}


# ---------------------------------------------------------------------- pair GPs
class EmbeddedState(NamedTuple):
    """A single-gene-protocol model's state and the gene table its inputs are built from."""

    inner: Any
    Z: np.ndarray


def _pair_gp(kernel: Kernel, options: FitOptions, name: str) -> GPModel:
    # center=False: a zero prior mean is "no response"; offsets shared by all
    # conditions belong in the kernel (Constant), so a pair gets twice a single's
    return GPModel(kernel=kernel, center=False, options=options, name=name)


@dataclasses.dataclass(frozen=True)
class PairGP:
    """One multi-output GP over singles and pairs, kernel :class:`PairKernel`, fitted by Eq. 1.

    ``base``: the single-gene kernel (default RBF + Constant: the Constant lets
    every gene carry the common, non-zero-centred response). ``interaction``:
    False gives the purely additive GP.
    """

    base: Kernel = RBF() + Constant()
    interaction: bool = True
    options: FitOptions = FitOptions()
    name: str = "pair_gp"

    @property
    def gp(self) -> GPModel:
        return _pair_gp(PairKernel(self.base, self.interaction), self.options, self.name)

    def fit(self, Z, train: Conditions, delta):
        Z = _checked(Z, train, delta)
        return EmbeddedState(self.gp.fit(paired(Z, train), delta), Z)

    def predict(self, state: EmbeddedState, test: Conditions) -> Prediction:
        _checked(state.Z, test)
        return self.gp.predict(state.inner, paired(state.Z, test))

    def record(self, state: EmbeddedState) -> dict:
        return record_of(self.gp, state.inner)


class ResidualState(NamedTuple):
    additive: AdditiveState
    residual: Any  # GPState, or None with fewer than 2 training pairs
    Z: np.ndarray


@dataclasses.dataclass(frozen=True)
class ResidualPairGP:
    """The additive baseline plus a GP on the training pairs' residuals over it:

        delta_ab = add_ab + r(a, b),   r ~ GP(0, PairKernel(base)) fitted on delta - add of training pairs.

    Far from every training pair r reverts to 0, i.e. to the additive model.
    With fewer than 2 training pairs it is the additive model (recorded).
    """

    additive: AdditiveBaseline = AdditiveBaseline()
    base: Kernel = RBF()
    options: FitOptions = FitOptions()
    name: str = "residual_gp"

    @property
    def gp(self) -> GPModel:
        return _pair_gp(PairKernel(self.base), self.options, self.name)

    def fit(self, Z, train: Conditions, delta) -> ResidualState:
        Z = _checked(Z, train, delta)
        add = self.additive.fit(Z, train, delta)
        pairs = train.take(train.is_pair)
        if len(pairs.first) < 2:
            return ResidualState(add, None, Z)
        residual = np.asarray(delta)[train.is_pair] - np.asarray(self.additive.predict(add, pairs).mean)
        return ResidualState(add, self.gp.fit(paired(Z, pairs), residual), Z)

    def predict(self, state: ResidualState, test: Conditions) -> Prediction:
        _checked(state.Z, test)
        add = self.additive.predict(state.additive, test).mean
        if state.residual is None:
            return Prediction(add, None)
        r = self.gp.predict(state.residual, paired(state.Z, test))
        return Prediction(add + r.mean, r.var)

    def record(self, state: ResidualState) -> dict:
        out: dict[str, dict | str] = {"additive": self.additive.record(state.additive)}
        out["residual"] = (
            record_of(self.gp, state.residual) if state.residual is not None else "fewer than 2 training pairs"
        )
        return out


# -------------------------------------------------------------- summed embedding
@dataclasses.dataclass(frozen=True)
class SummedEmbedding:
    """A single-gene model (kNN, ridge, a user's) on z_a + z_b, trained on singles and pairs."""

    model: Model
    name: str = "summed"

    def fit(self, Z, train: Conditions, delta):
        Z = _checked(Z, train, delta)
        return EmbeddedState(self.model.fit(*check_fit_inputs(summed(Z, train), delta)), Z)

    def predict(self, state: EmbeddedState, test: Conditions) -> Prediction:
        _checked(state.Z, test)
        return self.model.predict(state.inner, summed(state.Z, test))

    def record(self, state: EmbeddedState) -> dict:
        return record_of(self.model, state.inner)


#: The names of :func:`default_pair_models`, in the table's order.
PAIR_MODEL_NAMES = ("additive", "additive_gp", "pair_gp", "residual_gp", "knn_summed", "ridge_summed")


def default_pair_models(options: FitOptions = FitOptions()) -> tuple:
    """The models of the seen-0/1/2 table: additive baseline, the GPs, summed kNN and ridge."""
    return (
        AdditiveBaseline(),
        PairGP(interaction=False, options=options, name="additive_gp"),
        PairGP(options=options),
        ResidualPairGP(options=options),
        SummedEmbedding(KNN(k="tune"), name="knn_summed"),
        SummedEmbedding(Ridge(), name="ridge_summed"),
    )


__all__ = [
    "AdditiveBaseline",
    "AdditiveState",
    "Conditions",
    "EmbeddedState",
    "PairGP",
    "ResidualPairGP",
    "SummedEmbedding",
    "PAIR_MODEL_NAMES",
    "default_pair_models",
    "paired",
    "summed",
]

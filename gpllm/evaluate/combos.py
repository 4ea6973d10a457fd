"""Run pair models over the seen-0/1/2 folds and score every test pair.

Per test pair the usual four metrics (:func:`~gpllm.evaluate.metrics.perturbation_metrics`,
deltas to control, its own top DE genes) and GEARS' interaction view: the
pair's response is regressed on its two singles' (measured) responses,

    delta_ab ~ c1 delta_a + c2 delta_b     (no intercept)
    magnitude = sqrt(c1^2 + c2^2)

as Norman et al. 2019 and GEARS do (they fit it by Theil-Sen on well-expressed
genes; least squares here, one 2 x 2 solve per pair, over the union of the two
singles' top DE genes). Why those genes: the singles' own measurement noise
attenuates c1 and c2 (errors in the regressors), so that a truly additive pair
looks buffering; on the genes the singles move most the signal is largest
against that noise, which reduces the bias without removing it (on the
synthetic screen most truly independent pairs still measure as buffering).
An additive pair has c1 = c2 = 1, magnitude
sqrt(2); a magnitude above sqrt(2) (1 + ``magnitude_tol``) is called
synergistic, below sqrt(2) (1 - tol) buffering, else additive. The measured
pair gives the true class, the predicted pair (against the same measured
singles) the predicted one; pairs whose singles were not both measured have no
class ("n/a"). The additive baseline with measured singles therefore always
predicts "additive": the view asks whether a model gets the departures right.

Conditions naming a gene without an embedding row follow the embedding's
missing-gene policy (dropped under 'drop', imputed under 'mean'); what went
is logged and returned in ``notes``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from gpllm.data.embeddings.assemble import Embedding
from gpllm.data.screens.pairs import PairScreen, pair_screen
from gpllm.data.validate import preview
from gpllm.errors import DataError, InputError
from gpllm.evaluate.metrics import perturbation_metrics
from gpllm.evaluate.pair_splits import PairFold, seen_splits
from gpllm.evaluate.runner.store import RunStore
from gpllm.models.pairs import Conditions

log = logging.getLogger(__name__)

CLASSES = ("buffering", "additive", "synergy")
ADDITIVE_MAGNITUDE = float(np.sqrt(2.0))


@dataclasses.dataclass(frozen=True)
class CombosConfig:
    """n_folds, seed: of :func:`~gpllm.evaluate.pair_splits.seen_splits`.
    equal_sizes: within a seen category, every fold trains on as many singles and
    pairs as its smallest (random ones leave, seeded; a test pair's seen singles
    stay), so that a GP compiles once per category rather than once per fold.
    magnitude_tol: the band around the additive magnitude called additive."""

    n_folds: int = 5
    seed: int = 0
    equal_sizes: bool = True
    magnitude_tol: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.magnitude_tol < 1:
            raise InputError(f"magnitude_tol must lie in [0, 1), got {self.magnitude_tol}")


# ------------------------------------------------------------- interaction view
def magnitude(delta_pair: np.ndarray, delta_a: np.ndarray, delta_b: np.ndarray, weight=None) -> np.ndarray:
    """(M,) sqrt(c1^2 + c2^2) of the least-squares fit delta_pair ~ c1 delta_a + c2 delta_b,
    row by row, all (M, G), over the genes where ``weight`` (M, G) is 1 (default all);
    NaN where the singles are collinear there."""
    if weight is not None:
        delta_pair, delta_a, delta_b = (weight * x for x in (delta_pair, delta_a, delta_b))
    aa, bb, ab = (np.einsum("mg,mg->m", x, y) for x, y in ((delta_a, delta_a), (delta_b, delta_b), (delta_a, delta_b)))
    ya, yb = np.einsum("mg,mg->m", delta_pair, delta_a), np.einsum("mg,mg->m", delta_pair, delta_b)
    det = aa * bb - ab**2
    ok = det > 1e-12 * np.maximum(aa * bb, np.finfo(float).tiny)
    det = np.where(ok, det, 1.0)
    c1, c2 = (bb * ya - ab * yb) / det, (aa * yb - ab * ya) / det
    return np.where(ok, np.hypot(c1, c2), np.nan)


def interaction_class(mag: np.ndarray, tol: float) -> np.ndarray:
    """'synergy' / 'buffering' / 'additive' per magnitude (see the module docstring); 'n/a' for NaN."""
    ratio = np.asarray(mag) / ADDITIVE_MAGNITUDE
    out = np.where(ratio > 1 + tol, "synergy", np.where(ratio < 1 - tol, "buffering", "additive"))
    return np.where(np.isfinite(ratio), out, "n/a")


# ---------------------------------------------------------------------- inputs
class CombosInputs(NamedTuple):
    """The screen restricted to embedded genes, one embedding row per gene, and what went."""

    screen: PairScreen
    Z: np.ndarray
    rows: dict[str, int]
    notes: tuple[str, ...]


def align_pairs(screen: PairScreen, embedding: Embedding) -> CombosInputs:
    """Keep the singles and pairs whose genes all have an embedding row; count and log the rest."""
    rows = {g: i for i, g in enumerate(embedding.names)}
    singles = [p for p in screen.singles.perts if p in rows]
    keep = [i for i, (a, b) in enumerate(screen.genes) if a in rows and b in rows]
    notes = []
    gone_singles = sorted(set(screen.singles.perts) - set(singles))
    kept = set(keep)
    gone_pairs = [screen.pairs.perts[i] for i in range(screen.n_pairs) if i not in kept]
    if gone_singles or gone_pairs:
        notes.append(
            f"no embedding row: {len(gone_singles)} single(s) {preview(gone_singles)} and {len(gone_pairs)} pair(s) "
            f"{preview(gone_pairs)} dropped (missing-gene policy {embedding.provenance.get('missing_policy', '?')!r})"
        )
    if screen.set_apart:
        notes.append(
            f"{len(screen.set_apart)} condition(s) of three or more genes set apart: {preview(screen.set_apart)}"
        )
    for note in notes:
        log.warning("combos: %s", note)
    if len(keep) < 2 or len(singles) < 2:
        raise DataError(f"combos: {len(singles)} single(s) and {len(keep)} pair(s) have embeddings; need 2 of each")
    if len(keep) < screen.n_pairs or len(singles) < screen.singles.n_perts:
        combos = screen.pairs.select([screen.pairs.perts[i] for i in keep], note="combos: pairs with embeddings")
        screen = pair_screen(screen.singles.select(singles, note="combos: singles with embeddings"), combos)
    return CombosInputs(screen, np.asarray(embedding.Z), rows, tuple(notes))


# ------------------------------------------------------------------------ folds
def _equalise(folds: list[PairFold], screen: PairScreen, seed: int) -> list[PairFold]:
    """Each category's folds cut to its smallest training counts (see :class:`CombosConfig`)."""
    genes = dict(zip(screen.pairs.perts, screen.genes, strict=True))
    out = []
    for s in sorted({f.seen for f in folds}):
        group = [f for f in folds if f.seen == s]
        n_pairs = min(len(f.train_pairs) for f in group)
        n_singles = min(len(f.train_singles) for f in group)
        for f in group:
            rng = np.random.default_rng([seed, s, f.fold, 7])
            needed = {g for p in f.test_pairs for g in genes[p]} & set(f.train_singles)
            optional = [g for g in f.train_singles if g not in needed]
            n_optional = max(n_singles - len(needed), 0)
            drawn = set(rng.choice(optional, size=n_optional, replace=False).tolist()) if optional else set()
            kept = drawn | needed
            pairs = rng.choice(len(f.train_pairs), size=n_pairs, replace=False) if f.train_pairs else []
            out.append(
                f._replace(
                    train_singles=tuple(g for g in f.train_singles if g in kept),
                    train_pairs=tuple(f.train_pairs[i] for i in sorted(pairs)),
                )
            )
    return out


def _training(inputs: CombosInputs, fold: PairFold) -> tuple[Conditions, np.ndarray]:
    screen = inputs.screen
    names = (*fold.train_singles, *fold.train_pairs)
    delta = np.vstack(
        [
            screen.singles.delta[screen.singles.index(list(fold.train_singles))],
            screen.pairs.delta[screen.pairs.index(list(fold.train_pairs))],
        ]
    )
    return Conditions.from_names(names, inputs.rows), delta


# -------------------------------------------------------------------------- run
def _scores(inputs: CombosInputs, test: Sequence[str], predicted: np.ndarray, tol: float) -> dict[str, Any]:
    screen = inputs.screen
    idx = screen.pairs.index(list(test))
    ctrl = screen.singles.ctrl
    metrics = perturbation_metrics(
        ctrl + screen.pairs.delta[idx], ctrl + predicted, reference=ctrl, de=screen.pairs.de[idx]
    )
    srows = screen.single_rows[idx]
    both = (srows >= 0).all(axis=1)
    d_a = np.where(both[:, None], screen.singles.delta[np.maximum(srows[:, 0], 0)], np.nan)
    d_b = np.where(both[:, None], screen.singles.delta[np.maximum(srows[:, 1], 0)], np.nan)
    weight = np.zeros_like(d_a)
    for i, (a, b) in enumerate(np.maximum(srows, 0)):
        weight[i, screen.singles.de[a]] = weight[i, screen.singles.de[b]] = 1.0
    mag_true = magnitude(screen.pairs.delta[idx], d_a, d_b, weight)
    mag_pred = magnitude(predicted, d_a, d_b, weight)
    return {
        **{name: np.asarray(getattr(metrics, name)) for name in ("pearson_de", "pearson_all", "mae_de", "mae_all")},
        "magnitude_true": mag_true,
        "magnitude_pred": mag_pred,
        "class_true": interaction_class(mag_true, tol),
        "class_pred": interaction_class(mag_pred, tol),
    }


def run_combos(
    screen: PairScreen,
    embedding: Embedding,
    models: Sequence[Any],
    config: CombosConfig = CombosConfig(),
    progress=None,
    store: RunStore | None = None,
) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """One row per (seen, fold, model, test pair): metrics, magnitudes and classes,
    with the fold's training counts; and the notes of what was dropped or set apart.

    ``models`` follow :mod:`gpllm.models.pairs`' protocol; ``progress(done, total)``
    is called after each fitted fold. With an opened ``store`` (a run folder's
    :class:`~gpllm.evaluate.runner.store.RunStore`) each (fold, model) is a sealed part,
    read back instead of refitted when a run resumes, and the rows are the
    folder's ``results.parquet``.
    """
    inputs = align_pairs(screen, embedding)
    screen = inputs.screen
    folds = seen_splits(screen.genes, screen.singles.perts, n_folds=config.n_folds, seed=config.seed)
    if config.equal_sizes:
        folds = _equalise(folds, screen, config.seed)
    notes = list(inputs.notes)
    untestable = {s: sum(f.n_untestable for f in folds if f.seen == s) for s in (0, 1, 2)}
    notes.append(
        "pairs not testable in their fold per seen category: "
        + ", ".join(f"seen {s}: {n}" for s, n in untestable.items())
    )
    frames, keys, total = [], [], len(folds) * len(models)
    for fold in folds:
        if not fold.test_pairs:
            continue
        train, delta = _training(inputs, fold)
        test = Conditions.from_names(fold.test_pairs, inputs.rows)
        for model in models:
            keys.append(f"combos|seen{fold.seen}|fold{fold.fold}|{model.name}")
            if store is not None and store.has_part(keys[-1]):
                frames.append(store.read_part(keys[-1]))
            else:
                state = model.fit(inputs.Z, train, delta)
                predicted = np.asarray(model.predict(state, test).mean, dtype=np.float64)
                frames.append(
                    pl.DataFrame(
                        {
                            "seen": fold.seen,
                            "fold": fold.fold,
                            "model": model.name,
                            "pair": list(fold.test_pairs),
                            "n_train_singles": len(fold.train_singles),
                            "n_train_pairs": len(fold.train_pairs),
                            **_scores(inputs, fold.test_pairs, predicted, config.magnitude_tol),
                        }
                    )
                )
                if store is not None:
                    store.write_part(keys[-1], frames[-1])
            if progress is not None:
                progress(len(frames), total)
    if not frames:
        raise DataError("combos: no fold has a test pair")
    return (store.write_results(keys) if store is not None else pl.concat(frames)), tuple(notes)


__all__ = ["CLASSES", "CombosConfig", "CombosInputs", "align_pairs", "interaction_class", "magnitude", "run_combos"]

"""Score predictions made by any tool (gpllm, GEARS, ...) against a measured screen.

A prediction file is an h5ad with obs = predicted perturbations, var = genes,
X = predicted mean expression (not deltas) and optionally a layer of
predictive variances. Perturbation names may follow GEARS: a condition
('GENE+ctrl', 'ctrl+GENE' for a single knockout, 'A+B' for a pair), a
condition_name ('K562_GENE+ctrl_1+1'), or a key of GEARS' ``predict`` output
('GENE', 'A_B'); they are matched to the screen's names ('GENE', 'A+B'), a
pair in either order. Scoring uses the sweep's metrics
(:func:`~gpllm.evaluate.metrics.perturbation_metrics` against ctrl, the
Systema variant against a training mean, and
:func:`~gpllm.evaluate.metrics.predictive_scores` when a variance exists),
one row per perturbation with the sweep's column names.

Systema reference: the mean truth profile of the training perturbations
(``train``). Without a training list, the mean of the truth's perturbations
that were *not* predicted stands in for it (the usual held-out setting); if
every truth perturbation was predicted, pearson_de_meanref is NaN.

A pair measured under both orders: a raw truth (``--preset``) names every pair
with its genes sorted, so the cells labelled 'A+B' and those labelled 'B+A' are
pooled into one measurement of the pair (a note says which pairs). A processed
truth that still holds both spellings as two rows is matched exactly: a
prediction named 'B+A' is scored against the row 'B+A', and a name matching
neither spelling exactly (e.g. 'A_B') is refused as ambiguous, never scored
against a measurement of another label.

DE genes: the truth's own top-k (as processed), or GEARS' lists from the truth
file (:func:`gears_de`): ``uns['rank_genes_groups_cov_all']`` (whose first 20
GEARS' pearson_de / mse_de use) or ``uns['top_non_dropout_de_20']``, each a
dict condition_name -> var_names, most differential first.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.data.validate import check_finite, check_unique, preview
from gpllm.errors import DataError, InputError
from gpllm.evaluate.metrics import perturbation_metrics, predictive_scores, summarize_over_splits

#: Labels GEARS uses for the unperturbed half of a single-gene condition.
CONTROL_LABELS = frozenset({"ctrl", "control"})
#: The four headline metrics, in table order, and GEARS's squared errors.
METRICS = ("pearson_de", "pearson_all", "mae_de", "mae_all", "mse_de", "mse_all")
#: GEARS' condition_name, '<cell type>_<condition>_<dose>' (data_utils.get_DE_genes): dose '1+1'
#: for any two-part condition ('A+ctrl' too), '1' for 'ctrl'; e.g. 'K562_A+ctrl_1+1', 'K562_A+B_1+1'.
GEARS_CONDITION_NAME = re.compile(r"(?P<cell_type>.+)_(?P<condition>[^_]+)_(?P<dose>1(?:\+1)*)")
#: The uns entries of a GEARS h5ad that list each condition_name's DE genes (var_names, best first).
GEARS_DE_KEYS = ("rank_genes_groups_cov_all", "top_non_dropout_de_20")
#: How many DE genes GEARS scores.
GEARS_N_DE = 20


def gears_condition(name: str) -> str:
    """The condition inside a GEARS condition_name ('K562_A+ctrl_1+1' -> 'A+ctrl'); other names as given."""
    match = GEARS_CONDITION_NAME.fullmatch(str(name).strip())
    return match["condition"] if match else str(name).strip()


def normalise_name(name: str) -> str:
    """A GEARS condition as the screen names it: 'A+ctrl' / 'ctrl+A' / 'K562_A+ctrl_1+1' -> 'A', 'A+B' stays.

    InputError for a pure control ('ctrl'), which is no perturbation.
    """
    genes = [p.strip() for p in gears_condition(name).split("+")]
    genes = [g for g in genes if g and g not in CONTROL_LABELS]
    if not genes:
        raise InputError(f"prediction row {name!r} is a control, not a perturbation")
    return "+".join(genes)


def truth_from_raw(path: str | Path, preset: str) -> PerturbationData:
    """A raw screen (cells or pseudobulk, e.g. GEARS' h5ad with 'condition' / 'ctrl') processed
    for scoring: every gene kept (no HVG selection), single- and two-gene conditions together."""
    from gpllm.data.screens.labels import preset as preset_spec
    from gpllm.data.screens.perturbseq import read_screen

    screen = read_screen(path, preset_spec(preset, "--preset"), n_hvg=10**9)
    if screen.combos is None:
        return screen.singles
    singles, combos = screen.singles, screen.combos
    return PerturbationData(
        Y=np.vstack([singles.Y, combos.Y]),
        ctrl=singles.ctrl,
        de=np.vstack([singles.de, combos.de]),
        perts=singles.perts + combos.perts,
        genes=singles.genes,
        provenance={**dict(singles.provenance), "scored_with_two_gene_conditions": len(combos.perts)},
    )


def canonical(name: str) -> str:
    """A condition's order-free key: 'B+A' and 'A+B' -> 'A+B'."""
    return "+".join(sorted(name.split("+")))


@dataclass(frozen=True, eq=False)
class PredictionTable:
    """M predicted perturbations over G genes.

    perts: (M,) normalised names; genes: (G,); mean: (M, G) float64;
    var: (M, G) predictive variance per gene, or None;
    source: where it came from (used in messages); names: (M,) the names as
    the file gave them (empty: as ``perts``).
    """

    perts: tuple[str, ...]
    genes: tuple[str, ...]
    mean: np.ndarray
    var: np.ndarray | None
    source: str
    names: tuple[str, ...] = ()


def read_prediction(path: str | Path, variance_layer: str = "variance") -> tuple[PredictionTable, list[str]]:
    """A prediction h5ad as a :class:`PredictionTable`, plus notes for the user.

    Raises DataError for duplicated names (after normalisation) and NaN/inf
    values (naming the perturbation and gene). The variance layer, when
    present, is the per-gene predictive variance.
    """
    from gpllm.data.screens.h5ad import read_h5ad

    adata = read_h5ad(path)
    where = str(path)
    perts = tuple(normalise_name(p) for p in adata.obs_names)
    genes = tuple(str(g) for g in adata.var_names)
    check_unique(perts, "perturbation names (after GEARS normalisation)", where)
    check_unique(genes, "gene names", where)
    mean = _dense(adata.X)
    check_finite(mean, "predicted expression X", where, genes, perts)
    notes, var = [], None
    if variance_layer in adata.layers:
        layer = _dense(adata.layers[variance_layer])
        check_finite(layer, f"layers[{variance_layer!r}]", where, genes, perts)
        var = layer
    renamed = sum(a != b for a, b in zip(adata.obs_names, perts, strict=True))
    if renamed:
        notes.append(f"{renamed} GEARS-style perturbation name(s) normalised (e.g. 'GENE+ctrl' -> 'GENE')")
    return PredictionTable(perts, genes, mean, var, where, tuple(str(n) for n in adata.obs_names)), notes


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)


class Aligned(NamedTuple):
    """Predictions and truth on common rows and genes.

    mean (M, G) and var (M, G) | None in truth gene order; rows: (M,) truth row
    indices; notes: what alignment dropped or counted; names: (M,) the
    prediction file's own names of the rows.
    """

    perts: tuple[str, ...]
    mean: np.ndarray
    var: np.ndarray | None
    rows: np.ndarray
    notes: list[str]
    names: tuple[str, ...] = ()


def align_to_truth(pred: PredictionTable, truth: PerturbationData, *, skip_unknown: bool = False) -> Aligned:
    """Match predictions to the truth by perturbation and gene name.

    Every truth gene must be predicted (DataError names the missing ones);
    extra predicted genes are dropped. Predicted perturbations unknown to the
    truth raise DataError naming them, or with ``skip_unknown`` are dropped
    and counted; truth perturbations without a prediction are counted.
    """
    gpos = {g: j for j, g in enumerate(pred.genes)}
    missing = [g for g in truth.genes if g not in gpos]
    if missing:
        raise DataError(
            f"{pred.source}: {len(missing)} of the truth's {truth.n_genes} genes have no prediction: {preview(missing)}"
        )
    notes = []
    if len(pred.genes) > truth.n_genes:
        notes.append(f"{len(pred.genes) - truth.n_genes} predicted gene(s) not in the truth were ignored")
    pred = dataclasses.replace(pred, perts=match_names(pred.perts, truth.perts, pred.source))
    pooled = truth.provenance.get("pairs_pooled_across_orders", ())
    if pooled:
        more = f"; and {len(pooled) - 5} more" if len(pooled) > 5 else ""
        notes.append(
            f"{len(pooled)} pair(s) measured in both gene orders were scored against their cells "
            f"pooled: {'; '.join(pooled[:5])}{more}"
        )
    check_unique(pred.perts, "perturbations (matched to the truth's names)", pred.source)
    known = set(truth.perts)
    unknown = [p for p in pred.perts if p not in known]
    if unknown and (not skip_unknown or len(unknown) == len(pred.perts)):
        raise DataError(
            f"{pred.source}: {len(unknown)} predicted perturbation(s) are not in the truth screen: {preview(unknown)}"
            + ("" if skip_unknown else " (--skip-unknown scores the others)")
        )
    if unknown:
        notes.append(f"{len(unknown)} predicted perturbation(s) not in the truth were skipped: {preview(unknown)}")
    keep = [i for i, p in enumerate(pred.perts) if p in known]
    perts = tuple(pred.perts[i] for i in keep)
    not_predicted = truth.n_perts - len(perts)
    if not_predicted:
        notes.append(f"{not_predicted} of the truth's {truth.n_perts} perturbations have no prediction")
    cols = np.array([gpos[g] for g in truth.genes])
    var = None if pred.var is None else pred.var[np.ix_(keep, cols)]
    names = tuple((pred.names or pred.perts)[i] for i in keep)
    return Aligned(perts, pred.mean[np.ix_(keep, cols)], var, truth.index(perts), notes, names)


def match_names(names: Sequence[str], truth_perts: Sequence[str], source: str = "predictions") -> tuple[str, ...]:
    """Each (normalised) name as the truth spells it: the same name if the truth has it,
    else a pair in the other order ('B+A' -> the truth's 'A+B'), and a GEARS ``predict``
    key 'A_B' as the pair 'A+B' when no truth perturbation is called 'A_B'. Names the
    truth lacks come back unchanged. DataError (naming ``source``) for a name that only
    matches a pair the truth holds in both orders as two rows: which one it predicts is
    unknown."""
    exact = set(truth_perts)
    by_key: dict[str, list[str]] = {}
    for p in truth_perts:
        by_key.setdefault(canonical(p), []).append(p)

    def one(name: str) -> str:
        if name in exact:
            return name
        found = by_key.get(canonical(name))
        if found is None and "_" in name:
            found = by_key.get(canonical(name.replace("_", "+")))
        if found is not None and len(found) > 1:
            raise DataError(
                f"{source}: prediction {name!r} matches the truth's {found}, one pair measured in "
                "two orders as two rows; name the prediction as one of them, or pass the raw "
                "truth with --preset (its cells are then pooled)"
            )
        return found[0] if found else name

    return tuple(one(n) for n in names)


def gears_de(
    path: str | Path, key: str, truth: PerturbationData, aligned: Aligned, n: int = GEARS_N_DE
) -> tuple[np.ndarray, list[str]]:
    """(M, n) indices into ``truth.genes`` of each scored row's DE genes, the first ``n`` of
    GEARS' list ``uns[key]`` in the truth file ``path``, and notes for the user.

    GEARS keys the lists by condition_name and names genes by var_names; ``truth`` must hold
    every gene of ``path`` in file order (as :func:`truth_from_raw` reads it). Where two GEARS
    conditions are one perturbation here ('A+ctrl' and 'ctrl+A'), the list of the spelling
    the prediction used is taken, else the first. DataError if the key is absent or not such
    a dict, or a scored perturbation has no list or fewer than ``n`` genes.
    """
    from gpllm.data.screens.h5ad import read_h5ad

    adata = read_h5ad(path, backed=True)
    try:
        var_names = [str(v) for v in adata.var_names]
        lists = adata.uns.get(key)
        uns_keys = sorted(adata.uns.keys())
    finally:
        adata.file.close()
    where = f"{path}: uns[{key!r}]"
    if lists is None:
        raise DataError(
            f"{path}: uns has no {key!r} (it has {preview(uns_keys)}); GEARS writes "
            f"{' and '.join(GEARS_DE_KEYS)} into its h5ad, which --truth must then be (with --preset)"
        )
    if not isinstance(lists, Mapping):
        raise DataError(f"{where} is a {type(lists).__name__}, not GEARS' dict condition_name -> DE genes")
    if len(var_names) != truth.n_genes:
        raise DataError(
            f"{where}: the truth keeps {truth.n_genes} of the file's {len(var_names)} genes; "
            "GEARS' DE lists need every gene (give the raw file with --preset)"
        )
    position = {g: i for i, g in enumerate(var_names)}
    conditions: dict[str, list[str]] = {}
    for name in lists:
        try:
            conditions.setdefault(canonical(normalise_name(name)), []).append(str(name))
        except InputError:  # the control's own list
            continue
    rows, missing, short, unknown, ambiguous, repeated = [], [], [], set(), 0, {}
    for pert, own in zip(aligned.perts, aligned.names or aligned.perts, strict=True):
        names = conditions.get(canonical(pert))
        if not names:
            missing.append(pert)
            continue
        same = [c for c in names if gears_condition(c) == gears_condition(own)]
        ambiguous += len(names) > 1 and not same
        chosen = (same or names)[0]
        genes = [str(g) for g in list(lists[chosen])[:n]]
        unknown.update(g for g in genes if g not in position)
        if len(set(genes)) < len(genes):
            repeated[chosen] = sorted({g for g in genes if genes.count(g) > 1})
        if len(genes) < n:
            short.append(pert)
        rows.append([position.get(g, -1) for g in genes])
    if missing:
        raise DataError(f"{where}: no DE list for {len(missing)} scored perturbation(s): {preview(missing)}")
    if unknown:
        raise DataError(
            f"{where}: {len(unknown)} DE gene(s) are not among the file's var_names: {preview(sorted(unknown))}"
        )
    if short:
        raise DataError(f"{where}: fewer than {n} DE genes for {len(short)} perturbation(s): {preview(short)}")
    if repeated:
        first = next(iter(repeated))
        raise DataError(
            f"{where}: {len(repeated)} DE list(s) name a gene twice among their first {n}, e.g. "
            f"{first!r} repeats {preview(repeated[first])}"
        )
    notes = [f"DE genes (pearson_de, mae_de, mse_de): the first {n} of GEARS' uns[{key!r}] in {path}"]
    if ambiguous:
        notes.append(f"{ambiguous} perturbation(s) have two GEARS DE lists ('A+ctrl' and 'ctrl+A'); the first was used")
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), n), notes


def systema_reference(
    truth: PerturbationData, rows: np.ndarray, train: Sequence[str] | None
) -> tuple[np.ndarray | None, str]:
    """(reference profile (G,) or None, how it was chosen) for pearson_de_meanref.

    ``train`` given: their mean truth profile (InputError if any is among the
    scored rows). Otherwise the mean of the truth rows not scored.
    """
    if train is not None:
        idx = truth.index(list(train))
        leak = sorted(set(idx.tolist()) & set(rows.tolist()))
        if leak:
            raise InputError(
                f"{len(leak)} training perturbation(s) are also predicted: {preview([truth.perts[i] for i in leak])}"
            )
        return truth.Y[idx].mean(axis=0), f"mean of the {len(idx)} --train perturbations"
    rest = np.setdiff1d(np.arange(truth.n_perts), rows)
    if rest.size == 0:
        return None, "none: every truth perturbation was predicted and no --train was given (pearson_de_meanref is NaN)"
    return truth.Y[rest].mean(axis=0), f"mean of the {rest.size} truth perturbations not predicted (no --train given)"


def score(
    aligned: Aligned, truth: PerturbationData, reference: np.ndarray | None, de: np.ndarray | None = None
) -> pl.DataFrame:
    """One row per scored perturbation: pert, the four metrics, pearson_de_meanref,
    undefined_de, undefined_all, nll, coverage90 (NaN without a variance).

    de: (M, k) DE gene indices of the scored rows (e.g. :func:`gears_de`); default the truth's own.
    """
    Y_true = truth.Y[aligned.rows]
    de = truth.de[aligned.rows] if de is None else de
    m = len(aligned.perts)
    ctrl_ref = perturbation_metrics(Y_true, aligned.mean, reference=truth.ctrl, de=de)
    if reference is not None:
        meanref = np.asarray(perturbation_metrics(Y_true, aligned.mean, reference=reference, de=de).pearson_de)
    else:
        meanref = np.full(m, np.nan)
    if aligned.var is not None:
        scores = predictive_scores(Y_true, aligned.mean, aligned.var, levels=(0.9,))
        nll, coverage = np.asarray(scores.nll), np.asarray(scores.coverage[:, 0])
    else:
        nll = coverage = np.full(m, np.nan)
    return pl.DataFrame(
        {
            "pert": list(aligned.perts),
            **{name: np.asarray(getattr(ctrl_ref, name)) for name in METRICS},
            "pearson_de_meanref": meanref,
            "undefined_de": np.asarray(ctrl_ref.undefined_de),
            "undefined_all": np.asarray(ctrl_ref.undefined_all),
            "nll": nll,
            "coverage90": coverage,
        }
    )


class Summary(NamedTuple):
    """A metric over the scored perturbations: mean, 1.96 SE half-width (NaN for one), n."""

    metric: str
    mean: float
    half_width: float
    n: int


def summarise(
    rows: pl.DataFrame, metrics: Sequence[str] = (*METRICS, "pearson_de_meanref", "nll", "coverage90")
) -> list[Summary]:
    """Mean +- 1.96 SE across perturbations for each metric with finite values.

    There are no folds here, so each perturbation counts as its own split in
    :func:`summarize_over_splits`: SE = std(values, ddof=1) / sqrt(n).
    """
    out = []
    for name in metrics:
        values = rows[name].to_numpy()
        if not np.isfinite(values).all():
            continue
        s = summarize_over_splits(values, np.arange(values.size))
        out.append(Summary(name, s.mean, s.half_width, s.n_splits))
    return out

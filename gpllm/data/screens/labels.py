"""Which perturbation each row (cell or pseudobulk guide row) received.

A screen's obs table names the target in one column, with its own conventions:

* Replogle 2022 single-cell files: obs['gene'] is the target symbol and
  'non-targeting' marks control cells.
* Replogle 2022 bulk files: the row ID obs['gene_transcript'] is
  ``<n>_<GENE>_<promoter>_<ENSEMBL>`` for a targeting guide and ends in
  ``_non-targeting_non-targeting_non-targeting`` for a control guide.
* Norman 2019 (GEARS/perturbench style): obs['condition'] is 'control' (or
  'ctrl'), 'A', or 'A+B' for a two-gene perturbation ('A+ctrl' is a single);
  scPerturb's copy joins the genes with '_' ('A_B'). Parsed names always use '+'.

A pair is unordered: its name lists the genes sorted ('B+A' -> 'A+B'), so a
screen that measured one pair under both orders ('A+B' in some cells, 'B+A'
in others) has its cells pooled into one perturbation, and :class:`Labels`
names each pair so pooled, which the reader logs and records in provenance.

:class:`ObsSpec` describes one such convention; :func:`parse_labels` turns the
column into (kind, target) per row. Two-gene perturbations are recognised and
kept apart from the single-gene ones, never silently mixed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from gpllm.data.validate import preview, require_columns
from gpllm.errors import DataError

#: Kind codes in :class:`Labels`.
CONTROL, SINGLE, COMBO = 0, 1, 2
#: Separator of the genes in a multi-gene condition's name after parsing ('A+B').
COMBO_SEP = "+"


@dataclass(frozen=True)
class ObsSpec:
    """How to read perturbation labels from an AnnData's obs and var.

    Attributes
    ----------
    pert_col : obs column naming the perturbation (the obs index if it equals
        the index name, as Replogle's 'gene_transcript' row IDs).
    control_labels : labels (after parsing) that mark control cells.
    parse : 'plain' takes the column as is; 'replogle' extracts the gene symbol
        from Replogle's '<n>_<GENE>_<promoter>_<ENSEMBL>' guide IDs.
    combo_sep : separator of multi-gene labels ('A+B'); None disables combos.
    gene_col : var column holding gene symbols (None: var_names).
    weight_cols : bulk input only: obs columns of cells per row, used to pool
        rows of one perturbation; the first finite value per row wins, rows
        with none weigh 1 (counted in the log).
    subset : keep only rows whose obs[column] is one of the values, e.g.
        (('dataset', ('norman19',)),), applied before anything else.
    """

    pert_col: str = "gene"
    control_labels: tuple[str, ...] = ("non-targeting",)
    parse: Literal["plain", "replogle"] = "plain"
    combo_sep: str | None = "+"
    gene_col: str | None = None
    weight_cols: tuple[str, ...] = ()
    subset: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @staticmethod
    def make_subset(mapping: Mapping[str, str | Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Hashable form of ``{'column': value or values}`` for :attr:`subset`."""
        return tuple((k, (v,) if isinstance(v, str) else tuple(v)) for k, v in mapping.items())


#: Replogle 2022 single-cell h5ad (per-cell obs['gene']).
REPLOGLE_CELLS = ObsSpec(pert_col="gene", control_labels=("non-targeting",), gene_col="gene_name")
#: Replogle 2022 ``*_bulk_01.h5ad``: guide rows, pooled by cell count.
REPLOGLE_BULK = ObsSpec(
    pert_col="gene_transcript",
    control_labels=("non-targeting",),
    parse="replogle",
    gene_col="gene_name",
    weight_cols=("num_cells_filtered", "num_cells_unfiltered"),
)
#: The shared Norman 2019 cells (perturbench devel file), dataset norman19 only.
NORMAN19 = ObsSpec(
    pert_col="condition",
    control_labels=("control", "ctrl"),
    subset=(("dataset", ("norman19",)),),
)

#: GEARS' own h5ad layout (PertData): obs['condition'] 'ctrl', 'A+ctrl', 'A+B'; symbols in var['gene_name'].
GEARS = ObsSpec(pert_col="condition", control_labels=("ctrl",), gene_col="gene_name")
#: Norman 2019 as scPerturb distributes it: obs['perturbation'] 'control', 'A', 'A_B'.
NORMAN_SCPERTURB = ObsSpec(pert_col="perturbation", control_labels=("control",), combo_sep="_")

#: The layouts a config's ``preset`` (and ``gpllm data process --preset``) may name.
PRESETS = {
    "replogle_bulk": REPLOGLE_BULK,
    "replogle_cells": REPLOGLE_CELLS,
    "norman19": NORMAN19,
    "gears": GEARS,
    "norman_scperturb": NORMAN_SCPERTURB,
}


def preset(name: str | None, where: str = "preset") -> ObsSpec:
    """The :class:`ObsSpec` of a named preset (None: the generic default); InputError if unknown."""
    if name is None:
        return ObsSpec()
    if name not in PRESETS:
        from gpllm.errors import InputError

        raise InputError(f"{where}: unknown preset {name!r}; use one of {sorted(PRESETS)}")
    return PRESETS[name]


class Labels(NamedTuple):
    """Per-row parse of the perturbation column (N rows kept after subsetting).

    keep : bool (N_all,) rows that pass ``subset``.
    kind : int8 (N,) CONTROL, SINGLE or COMBO per kept row.
    target : object (N,) perturbation name per kept row ('' for controls; a pair's genes sorted).
    pooled : one line per pair whose rows came under more than one order, e.g.
        "A+B (rows labelled 'A+B': 15, 'B+A': 12)".
    """

    keep: np.ndarray
    kind: np.ndarray
    target: np.ndarray
    pooled: tuple[str, ...] = ()


def _column(obs, col: str, where: str) -> np.ndarray:
    """obs[col] (or the obs index, if so named) as an object array of str."""
    if col in obs.columns:
        n_na = int(obs[col].isna().sum())
        if n_na:
            raise DataError(f"{where}: obs column {col!r} has {n_na} empty (NaN) label(s)")
        return np.asarray(obs[col].astype(str).to_numpy(), dtype=object)
    if obs.index.name == col:
        return np.asarray(obs.index.astype(str), dtype=object)
    require_columns(list(obs.columns), [col], where)
    raise AssertionError("unreachable: require_columns raised")


def subset_mask(obs, spec: ObsSpec, where: str) -> np.ndarray:
    """bool (N,) rows kept by ``spec.subset``; names a missing column."""
    keep = np.ones(len(obs), dtype=bool)
    for col, values in spec.subset:
        require_columns(obs.columns, [col], where)
        vals = obs[col].astype(str).to_numpy()
        keep &= np.isin(vals, list(values))
        if not keep.any():
            raise DataError(
                f"{where}: no row has obs[{col!r}] in {list(values)}; values present: {preview(sorted(set(vals)))}"
            )
    return keep


def _parse_replogle(raw: str, controls: frozenset[str]) -> str | None:
    """Gene symbol of a Replogle guide ID, '' for a control, None if unparseable."""
    if raw in controls or raw.endswith("non-targeting"):
        return ""
    parts = raw.split("_")
    if len(parts) >= 4 and parts[-1].startswith("ENSG"):
        return "_".join(parts[1:-2])
    return None


def parse_labels(obs, spec: ObsSpec, where: str = "obs") -> Labels:
    """Classify every row of ``obs`` as control, single- or multi-gene perturbation.

    Raises :class:`DataError` naming the column if it is missing or has empty
    labels, if a Replogle ID cannot be parsed, or if no control row is found.
    """
    keep = subset_mask(obs, spec, where)
    raw = _column(obs, spec.pert_col, where)[keep]
    controls = frozenset(spec.control_labels)
    kind = np.empty(raw.shape[0], dtype=np.int8)
    target = np.empty(raw.shape[0], dtype=object)
    cache: dict[str, tuple[int, str]] = {}
    bad: list[str] = []
    for i, r in enumerate(raw):
        hit = cache.get(r)
        if hit is None:
            hit = _classify(r, spec, controls)
            cache[r] = hit
        if hit[0] < 0:
            bad.append(r)
        kind[i], target[i] = hit
    if bad:
        what = (
            "are not Replogle guide IDs '<n>_<GENE>_<promoter>_<ENSG...>' nor controls"
            if spec.parse == "replogle"
            else "are empty"
        )
        raise DataError(f"{where}: {len(bad)} label(s) in obs[{spec.pert_col!r}] {what}: {preview(sorted(set(bad)))}")
    if not (kind == CONTROL).any():
        raise DataError(
            f"{where}: no control rows: none of obs[{spec.pert_col!r}] matches the control "
            f"label(s) {list(spec.control_labels)}; labels seen: {preview(sorted(set(raw)), 8)}"
        )
    return Labels(keep=keep, kind=kind, target=target, pooled=_pooled_orders(raw, kind, target))


def _pooled_orders(raw: np.ndarray, kind: np.ndarray, target: np.ndarray) -> tuple[str, ...]:
    """A line per multi-gene perturbation whose rows carried more than one label."""
    rows = kind == COMBO
    if not rows.any():
        return ()
    spellings: dict[str, dict[str, int]] = {}
    for label, name in zip(raw[rows], target[rows], strict=True):
        counts = spellings.setdefault(name, {})
        counts[label.strip()] = counts.get(label.strip(), 0) + 1
    return tuple(
        f"{name} (rows labelled " + ", ".join(f"{lab!r}: {n}" for lab, n in sorted(counts.items())) + ")"
        for name, counts in sorted(spellings.items())
        if len(counts) > 1
    )


def _classify(raw: str, spec: ObsSpec, controls: frozenset[str]) -> tuple[int, str]:
    label = raw.strip()
    if spec.parse == "replogle":
        sym = _parse_replogle(label, controls)
        if sym is None:
            return -1, label
        return (CONTROL, "") if sym == "" else (SINGLE, sym)
    if not label:
        return -1, label
    if label in controls:
        return CONTROL, ""
    if spec.combo_sep and spec.combo_sep in label:
        parts = [p.strip() for p in label.split(spec.combo_sep)]
        genes = [p for p in parts if p and p not in controls]
        if not genes:
            return CONTROL, ""
        if len(genes) == 1:
            return SINGLE, genes[0]
        return COMBO, COMBO_SEP.join(sorted(genes))  # one separator and order downstream, whatever the file's
    return SINGLE, label

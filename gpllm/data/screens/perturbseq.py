"""Perturb-seq screen (AnnData of cells or pseudobulk rows) -> :class:`PerturbationData`.

Steps, each recorded in the result's provenance:

1. keep the rows selected by ``spec.subset``; classify each as control,
   single- or two-gene perturbation (:mod:`gpllm.data.screens.labels`);
2. total-count normalise to ``target_sum`` and log1p, unless the data is
   already log-normalised (declared with ``lognorm=True``, or detected);
3. select ``n_hvg`` highly variable genes (scanpy's rule, flavour configurable);
4. average per perturbation and over all control rows (``Y``, ``ctrl``);
5. top ``n_de`` DE genes per perturbation: Welch t-test against all control
   cells ranked by |t| for single cells (GEARS), |x_p - ctrl| for pseudobulk.

Single cells are processed in memory through scanpy, or, for files too large
for memory, streamed in chunks from a backed AnnData with the same maths
(:mod:`gpllm.data.screens.pseudobulk`). Pseudobulk rows of one perturbation (Replogle's
per-guide rows) are pooled weighted by their cell counts before normalising.
Single- and two-gene perturbations come back as separate screens.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.sparse as sp

from gpllm.data.screens import de as de_mod
from gpllm.data.screens import hvg as hvg_mod
from gpllm.data.screens.h5ad import read_h5ad
from gpllm.data.screens.labels import COMBO, CONTROL, SINGLE, ObsSpec, parse_labels
from gpllm.data.screens.perturbation_data import MIN_PERTS, PerturbationData
from gpllm.data.screens.pseudobulk import (
    CONTROL_GROUP,
    Groups,
    accumulate_moments,
    make_groups,
    normalise_log1p,
)
from gpllm.data.validate import check_expression, check_unique, preview
from gpllm.errors import DataError, InputError

log = logging.getLogger(__name__)

InputKind = Literal["auto", "cells", "bulk"]
#: A file larger than this is streamed in chunks when ``chunked=None``.
CHUNKED_ABOVE_BYTES = 2 * 1024**3


class Screen(NamedTuple):
    """A processed screen: single-gene perturbations, and two-gene ones kept apart."""

    singles: PerturbationData
    combos: PerturbationData | None


@dataclass(frozen=True)
class Options:
    """Processing choices shared by every path (see :func:`screen_from_anndata`)."""

    kind: InputKind = "auto"
    lognorm: bool | None = None
    target_sum: float = 1e4
    n_hvg: int = 2000
    hvg_flavor: str = "seurat"
    n_de: int = 20
    de_method: Literal["auto", "t-test", "abs-delta"] = "auto"
    min_cells: int = 2
    duplicate_genes: Literal["error", "make_unique"] = "error"

    def __post_init__(self) -> None:
        hvg_mod.check_flavor(self.hvg_flavor)
        if self.kind not in ("auto", "cells", "bulk"):
            raise InputError(f"kind must be 'auto', 'cells' or 'bulk', got {self.kind!r}")
        if self.de_method not in ("auto", "t-test", "abs-delta"):
            raise InputError(f"de_method must be 'auto', 't-test' or 'abs-delta', got {self.de_method!r}")
        if self.duplicate_genes not in ("error", "make_unique"):
            raise InputError(f"duplicate_genes must be 'error' or 'make_unique', got {self.duplicate_genes!r}")
        for name in ("n_hvg", "n_de", "min_cells"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.target_sum > 0:
            raise InputError(f"target_sum must be > 0, got {self.target_sum}")


# ----------------------------------------------------------------- detection
def detect_lognorm(sample, uns, where: str) -> tuple[bool, str]:
    """Is the data already log-normalised? Returns (answer, reason).

    ``uns['log1p']`` (scanpy's mark) means yes. Otherwise a sample of values
    decides: all integers -> raw counts; non-integers above 30 (log1p of 1e13)
    -> mean counts, as Replogle's bulk files; else log-normalised.
    """
    if uns is not None and "log1p" in uns:
        return True, "detected: uns['log1p'] present"
    vals = sample.data if sp.issparse(sample) else np.asarray(sample).ravel()
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        raise DataError(f"{where}: cannot tell whether X is log-normalised: the sample is empty")
    if np.all(vals == np.round(vals)):
        return False, "detected: integer values (raw counts)"
    if vals.max() > 30:
        return False, f"detected: non-integer values up to {vals.max():.3g} (mean counts)"
    return True, f"detected: non-integer values, max {vals.max():.3g}"


def _detect_kind(groups: Groups) -> tuple[str, str]:
    """'cells' if perturbations typically have >= 5 rows, else 'bulk'."""
    n = np.bincount(groups.codes, minlength=len(groups.names))[1:]
    med = float(np.median(n)) if n.size else 0.0
    kind = "cells" if med >= 5 else "bulk"
    return kind, f"detected: median {med:g} rows per perturbation"


def _gene_names(var, spec: ObsSpec, opts: Options, where: str) -> tuple[str, ...]:
    if spec.gene_col is None:
        names = [str(g) for g in var.index]
        col = "var_names"
    elif spec.gene_col in var.columns:
        names = [str(g) for g in var[spec.gene_col]]
        col = f"var[{spec.gene_col!r}]"
    elif var.index.name == spec.gene_col:
        names = [str(g) for g in var.index]
        col = f"var index {spec.gene_col!r}"
    else:
        raise DataError(
            f"{where}: var has no gene-name column {spec.gene_col!r}; columns: {preview(list(var.columns), 20)}"
        )
    if opts.duplicate_genes == "make_unique":
        import anndata as ad

        made = list(ad.utils.make_index_unique(__import__("pandas").Index(names)))
        n = sum(a != b for a, b in zip(names, made, strict=True))
        if n:
            log.warning("%s: %d duplicated gene name(s) in %s renamed NAME-1, NAME-2, ...", where, n, col)
        return tuple(made)
    check_unique(names, f"gene names in {col}", where)
    return tuple(names)


# --------------------------------------------------------------- assembling
def _assemble(
    groups: Groups,
    n: np.ndarray,
    mean: np.ndarray,
    de_rows: dict[int, np.ndarray],
    genes: tuple[str, ...],
    prov: dict[str, Any],
) -> Screen:
    """Split groups into singles and combos, each its own PerturbationData.

    Two-gene perturbations never enter the singles screen: their names and
    count are recorded in the singles' provenance and logged. A combos screen
    with fewer than MIN_PERTS perturbations is not built (also logged).
    """
    where = prov["source"]
    idx = {kind: [k for k in de_rows if groups.kinds[k] == kind] for kind in (SINGLE, COMBO)}
    combo_names = [groups.names[k] for k in idx[COMBO]]
    if combo_names:
        log.info(
            "%s: %d two-gene perturbation(s) kept apart from the single-gene screen: %s",
            where,
            len(combo_names),
            preview(combo_names),
        )
    if 0 < len(combo_names) < MIN_PERTS:
        log.warning(
            "%s: only %d two-gene perturbation(s) %s: no combo screen built",
            where,
            len(combo_names),
            preview(combo_names),
        )
    out: dict[int, PerturbationData | None] = {}
    for kind, label in ((SINGLE, "single"), (COMBO, "combo")):
        rows = idx[kind]
        if len(rows) < MIN_PERTS:
            out[kind] = None
            continue
        p = dict(prov)
        p["perturbation_kind"] = label
        p["n_cells_median"] = float(np.median(n[rows]))
        if kind == SINGLE:
            p["n_combo_perturbations_excluded"] = len(combo_names)
            p["combo_perturbations_excluded"] = combo_names
        out[kind] = PerturbationData(
            Y=mean[rows],
            ctrl=mean[0],
            de=np.stack([de_rows[k] for k in rows]),
            perts=tuple(groups.names[k] for k in rows),
            genes=genes,
            provenance=p,
        )
    return Screen(singles=out[SINGLE], combos=out[COMBO])


def _eligible(groups: Groups, n: np.ndarray, min_rows: int, where: str) -> tuple[list[int], list[str]]:
    """Groups with >= min_rows rows (drops logged), checked before any statistics.

    Raises :class:`DataError` if the controls have fewer rows or fewer than
    MIN_PERTS single-gene perturbations remain.
    """
    if n[0] < min_rows:
        raise DataError(f"{where}: only {n[0]} control row(s); at least {min_rows} needed")
    keep, drop = [], []
    for k in range(1, len(groups.names)):
        (keep if n[k] >= min_rows else drop).append(k)
    names = [groups.names[k] for k in drop]
    if drop:
        log.warning(
            "%s: dropped %d perturbation(s) with fewer than %d cells: %s",
            where,
            len(drop),
            min_rows,
            preview(names),
        )
    singles = [groups.names[k] for k in keep if groups.kinds[k] == SINGLE]
    if len(singles) < MIN_PERTS:
        n_combo = sum(groups.kinds[k] == COMBO for k in keep)
        raise DataError(
            f"{where}: {len(singles)} single-gene perturbation(s) left {preview(singles)}; "
            f"at least {MIN_PERTS} needed ({len(drop)} dropped below {min_rows} cells, "
            f"{n_combo} two-gene perturbation(s) kept apart)"
        )
    return keep, names


def _select_hvg_count(G: int, opts: Options, where: str) -> bool:
    """True if HVG selection is needed; logs when all genes are kept."""
    if G <= opts.n_hvg:
        log.info("%s: %d genes <= n_hvg=%d: keeping all genes", where, G, opts.n_hvg)
        return False
    return True


def _base_provenance(where: str, spec: ObsSpec, opts: Options, n_all: int, labels) -> dict[str, Any]:
    kinds = labels.kind
    return {
        "source": where,
        "obs_spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()},
        "options": {k: v for k, v in asdict(opts).items()},
        "n_rows_input": int(n_all),
        "n_rows_outside_subset": int(n_all - labels.keep.sum()),
        "n_control_rows": int((kinds == CONTROL).sum()),
        "n_single_rows": int((kinds == SINGLE).sum()),
        "n_combo_rows": int((kinds == COMBO).sum()),
        "steps": [],
    }


# -------------------------------------------------------------------- cells
def _cells_in_memory(adata, labels, groups, keep, genes, opts, lognorm, prov, where) -> Screen:
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    rows = np.flatnonzero(labels.keep)
    X = adata.X[rows]
    X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.array(X, dtype=np.float64)
    check_expression(X, where, genes, adata.obs_names[rows])
    obs = pd.DataFrame(
        {"group": pd.Categorical([groups.names[c] for c in groups.codes])},
        index=[str(i) for i in range(X.shape[0])],
    )
    work = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=list(genes)))
    counts_layer = None
    if not lognorm:
        if opts.hvg_flavor == "seurat_v3":
            work.layers["counts"] = work.X.copy()
            counts_layer = "counts"
        sc.pp.normalize_total(work, target_sum=opts.target_sum)
        sc.pp.log1p(work)
    hvg = np.ones(len(genes), dtype=bool)
    if _select_hvg_count(len(genes), opts, where):
        hvg = hvg_mod.hvg_scanpy(work, opts.n_hvg, opts.hvg_flavor, counts_layer)
    work = work[:, hvg].copy()
    genes = tuple(np.asarray(genes, dtype=object)[hvg])
    K = len(groups.names)
    S = sp.csr_matrix(
        (np.ones(len(groups.codes)), (groups.codes, np.arange(len(groups.codes)))), shape=(K, len(groups.codes))
    )
    n = np.bincount(groups.codes, minlength=K)
    mean = np.asarray((S @ work.X).todense() if sp.issparse(work.X) else S @ work.X) / n[:, None]
    de_method = "t-test" if opts.de_method == "auto" else opts.de_method
    if de_method == "t-test":
        top = de_mod.de_scanpy_ttest(work, "group", [groups.names[k] for k in keep], CONTROL_GROUP, opts.n_de)
    else:
        top = de_mod.top_k_abs(mean[keep] - mean[0], opts.n_de)
    prov.update(
        hvg_flavor=opts.hvg_flavor,
        n_hvg=int(hvg.sum()),
        de_method=de_method,
        de_reference="all control cells",
        chunked=False,
    )
    done = ([] if lognorm else ["normalize_total", "log1p"]) + ["highly_variable_genes"]
    done += ["rank_genes_groups (t-test)"] if de_method == "t-test" else []
    prov["steps"].append("scanpy: " + ", ".join(done))
    return _assemble(groups, n, mean, dict(zip(keep, top, strict=True)), genes, prov)


def _cells_streamed(adata, labels, groups, keep, genes, opts, lognorm, prov, where, chunk_size, on_chunk) -> Screen:
    flavor = opts.hvg_flavor
    hvg_mod.check_flavor(flavor, hvg_mod.MOMENT_FLAVORS)
    K = len(groups.names)
    mom = accumulate_moments(
        adata.X,
        groups.codes,
        K,
        genes=genes,
        lognorm=lognorm,
        target_sum=opts.target_sum,
        chunk_size=chunk_size,
        rows=np.flatnonzero(labels.keep),
        where=where,
        on_chunk=on_chunk,
    )
    hvg = np.ones(len(genes), dtype=bool)
    if _select_hvg_count(len(genes), opts, where):
        gm, gv = mom.gene_moments(hvg_mod.moment_space(flavor))
        hvg = hvg_mod.hvg_from_moments(gm, gv, opts.n_hvg, flavor)
    mean, var = mom.mean_var()
    mean, var = mean[:, hvg], var[:, hvg]
    genes = tuple(np.asarray(genes, dtype=object)[hvg])
    de_method = "t-test" if opts.de_method == "auto" else opts.de_method
    if de_method == "t-test":
        scores = de_mod.welch_t(mean[keep], var[keep], mom.n[keep], mean[0], var[0], int(mom.n[0]))
    else:
        scores = mean[keep] - mean[0]
    top = de_mod.top_k_abs(scores, opts.n_de)
    prov.update(
        hvg_flavor=flavor,
        n_hvg=int(hvg.sum()),
        de_method=de_method,
        de_reference="all control cells",
        chunked=True,
        chunk_size=chunk_size,
        n_zero_total_cells=mom.n_zero_total,
    )
    prov["steps"].append(f"streamed moments in chunks of {chunk_size} rows; HVG and Welch t from moments")
    return _assemble(groups, mom.n, mean, dict(zip(keep, top, strict=True)), genes, prov)


# --------------------------------------------------------------------- bulk
def _row_weights(obs, spec: ObsSpec, where: str) -> tuple[np.ndarray, str]:
    """Cells behind each bulk row: first finite value among spec.weight_cols, else 1."""
    w = np.full(len(obs), np.nan)
    used = []
    for col in spec.weight_cols:
        if col not in obs.columns:
            continue
        v = np.asarray(obs[col], dtype=np.float64)
        fill = np.isnan(w) & np.isfinite(v) & (v > 0)
        if fill.any():
            used.append(f"{col} ({int(fill.sum())} rows)")
        w[fill] = v[fill]
    n_default = int(np.isnan(w).sum())
    if spec.weight_cols and n_default:
        log.warning("%s: %d bulk row(s) have no cell count in %s: weighted 1", where, n_default, list(spec.weight_cols))
    w[np.isnan(w)] = 1.0
    how = ", ".join(used) if used else "equal weights"
    if n_default and used:
        how += f", {n_default} rows weight 1"
    return w, how


def _bulk(adata, labels, groups, keep, genes, opts, lognorm, prov, where, spec) -> Screen:
    import anndata as ad
    import pandas as pd

    if opts.de_method == "t-test":
        raise InputError(f"{where}: de_method 't-test' needs single cells; this input is pseudobulk")
    if opts.hvg_flavor == "seurat_v3" and len(genes) > opts.n_hvg:
        raise InputError(f"{where}: hvg flavor 'seurat_v3' needs single-cell counts, not pseudobulk rows")
    rows = np.flatnonzero(labels.keep)
    names = pd.Index(adata.obs_names[rows])
    if names.has_duplicates:  # the same row twice is a copy, not a second guide: say so
        repeated = names[names.duplicated()].unique()
        log.warning(
            "%s: %d row name(s) appear more than once (e.g. %s); their rows are pooled into "
            "their perturbation like any other rows",
            where,
            len(repeated),
            preview(list(repeated)),
        )
        prov["n_duplicated_row_names"] = int(len(repeated))
    X = adata.X[rows]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    check_expression(X, where, genes, adata.obs_names[rows])
    w, how = _row_weights(adata.obs.iloc[rows], spec, where)
    K = len(groups.names)
    W = sp.csr_matrix((w, (groups.codes, np.arange(len(rows)))), shape=(K, len(rows)))
    wsum = np.asarray(W.sum(axis=1)).ravel()
    pooled = np.asarray(W @ X) / wsum[:, None]
    if not lognorm:
        pooled, _, _ = normalise_log1p(pooled, opts.target_sum)
    hvg = np.ones(len(genes), dtype=bool)
    if _select_hvg_count(len(genes), opts, where):
        tmp = ad.AnnData(X=pooled, var=pd.DataFrame(index=list(genes)))
        hvg = hvg_mod.hvg_scanpy(tmp, opts.n_hvg, opts.hvg_flavor)
    pooled = pooled[:, hvg]
    genes = tuple(np.asarray(genes, dtype=object)[hvg])
    n_rows = np.bincount(groups.codes, minlength=K)
    top = de_mod.top_k_abs(pooled[keep] - pooled[0], opts.n_de)
    prov.update(
        hvg_flavor=opts.hvg_flavor,
        n_hvg=int(hvg.sum()),
        de_method="abs-delta",
        de_reference="pooled control rows",
        chunked=False,
        row_pooling=how,
        n_rows_pooled=int(len(rows) - K),
    )
    prov["steps"].append(f"pooled {len(rows)} rows into {K} groups ({how}) before normalising")
    return _assemble(groups, n_rows, pooled, dict(zip(keep, top, strict=True)), genes, prov)


# ---------------------------------------------------------------- public API
def _process(adata, spec, opts, where, *, backed, chunk_size=4096, on_chunk=None) -> Screen:
    n_all = adata.n_obs
    labels = parse_labels(adata.obs, spec, where)
    genes = _gene_names(adata.var, spec, opts, where)
    groups = make_groups(labels)
    prov = _base_provenance(where, spec, opts, n_all, labels)
    if labels.pooled:
        log.warning(
            "%s: %d pair(s) measured under both gene orders, their cells pooled as one: %s",
            where,
            len(labels.pooled),
            preview(list(labels.pooled)),
        )
        prov["pairs_pooled_across_orders"] = list(labels.pooled)
        prov["steps"].append(f"pooled the cells of {len(labels.pooled)} pair(s) labelled in both gene orders")
    if opts.kind == "auto":
        kind, why = _detect_kind(groups)
    else:
        kind, why = opts.kind, "declared"
    prov["input_kind"] = kind
    prov["input_kind_reason"] = why
    # checked before any pass over X: a hopeless screen fails in seconds, not after streaming
    min_rows = opts.min_cells if kind == "cells" else 1
    if kind == "bulk" and opts.min_cells != Options.min_cells:
        log.warning(
            "%s: min_cells=%d counts single cells; this is a pseudobulk screen (%s), so it is not applied",
            where,
            opts.min_cells,
            why,
        )
    keep, dropped = _eligible(groups, np.bincount(groups.codes, minlength=len(groups.names)), min_rows, where)
    prov.update(n_dropped_min_cells=len(dropped), dropped_min_cells=dropped[:50])
    if opts.lognorm is None:
        # a contiguous block from the first kept row: one cheap read when backed
        start = int(np.flatnonzero(labels.keep)[0])
        sample = adata.X[start : start + 1000]
        lognorm, reason = detect_lognorm(sample, adata.uns, where)
    else:
        lognorm, reason = opts.lognorm, "declared"
    unit = "cell" if kind == "cells" else "pooled row"
    prov["normalisation"] = (
        f"none: already log-normalised ({reason})"
        if lognorm
        else f"total-count to {opts.target_sum:g} per {unit}, then log1p ({reason})"
    )
    log.info("%s: %s input (%s); %s", where, kind, why, prov["normalisation"])
    if kind == "bulk":
        if backed:
            adata = adata.to_memory()
        return _bulk(adata, labels, groups, keep, genes, opts, lognorm, prov, where, spec)
    if backed:
        return _cells_streamed(adata, labels, groups, keep, genes, opts, lognorm, prov, where, chunk_size, on_chunk)
    return _cells_in_memory(adata, labels, groups, keep, genes, opts, lognorm, prov, where)


def screen_from_anndata(
    adata,
    spec: ObsSpec = ObsSpec(),
    *,
    kind: InputKind = "auto",
    lognorm: bool | None = None,
    target_sum: float = 1e4,
    n_hvg: int = 2000,
    hvg_flavor: str = "seurat",
    n_de: int = 20,
    de_method: Literal["auto", "t-test", "abs-delta"] = "auto",
    min_cells: int = 2,
    duplicate_genes: Literal["error", "make_unique"] = "error",
    source: str = "AnnData",
) -> Screen:
    """Process an in-memory AnnData of cells or pseudobulk rows into a :class:`Screen`.

    Parameters
    ----------
    adata : AnnData, cells x genes (or guide rows x genes for pseudobulk).
    spec : how obs names perturbations and controls (see :class:`ObsSpec`;
        presets ``REPLOGLE_CELLS``, ``REPLOGLE_BULK``, ``NORMAN19``).
    kind : 'cells', 'bulk' or 'auto' (cells if perturbations have >= 5 rows).
    lognorm : True if X is already log1p-normalised, False for counts, None to
        detect (see :func:`detect_lognorm`).
    target_sum : counts per cell after total-count normalisation.
    n_hvg, hvg_flavor : highly variable genes kept (all if fewer are measured).
    n_de : DE genes per perturbation; de_method 'auto' means 't-test' for cells
        and 'abs-delta' for pseudobulk.
    min_cells : perturbations with fewer cells are dropped (counted, logged).
    duplicate_genes : 'error', or 'make_unique' (renamed NAME-1, logged).
    source : name of the input used in messages and provenance.

    Returns ``Screen(singles, combos)``: Y (P, G), ctrl (G,), de (P, n_de).
    """
    opts = Options(kind, lognorm, target_sum, n_hvg, hvg_flavor, n_de, de_method, min_cells, duplicate_genes)
    return _process(adata, spec, opts, source, backed=False)


def read_screen(
    path: str | Path,
    spec: ObsSpec = ObsSpec(),
    *,
    chunked: bool | None = None,
    chunk_size: int = 4096,
    on_chunk=None,
    **options: Any,
) -> Screen:
    """Read and process an h5ad screen; large single-cell files are streamed in chunks.

    ``chunked=None`` streams files larger than 2 GiB; ``on_chunk(done, total)``
    reports streaming progress. Other keyword options as :func:`screen_from_anndata`.
    Raises :class:`~gpllm.errors.CorruptFileError` for a truncated or corrupt file.
    """
    path = Path(path)
    opts = Options(**options)
    if chunked is None:
        chunked = path.stat().st_size > CHUNKED_ABOVE_BYTES if path.exists() else False
    adata = read_h5ad(path, backed=chunked)
    try:
        return _process(adata, spec, opts, str(path), backed=chunked, chunk_size=chunk_size, on_chunk=on_chunk)
    finally:
        if chunked:
            adata.file.close()

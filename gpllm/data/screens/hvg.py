"""Highly variable genes: scanpy on in-memory data, the same rule from moments.

scanpy's dispersion-based flavours need only per-gene means and variances:

* 'seurat': moments of expm1(x) (size-normalised counts); dispersion
  d = log(var / mean), binned into ``n_bins`` equal-width bins of log1p(mean),
  normalised within bin as (d - mean_bin(d)) / std_bin(d).
* 'cell_ranger': moments of x itself; d = var / mean, bins at the 10th..100th
  percentiles of the mean in steps of 5, normalised as (d - median) / MAD.

The top ``n_top`` genes by normalised dispersion are kept (ties at the cut-off
kept too, as scanpy does). :func:`hvg_from_moments` reproduces this exactly so
that a chunked pass over a file too large for memory selects the same genes as
``scanpy.pp.highly_variable_genes`` on the whole matrix (tested).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from gpllm.errors import InputError

log = logging.getLogger(__name__)

Flavor = Literal["seurat", "cell_ranger", "seurat_v3"]
FLAVORS: tuple[str, ...] = ("seurat", "cell_ranger", "seurat_v3")
#: Flavours computable from streamed per-gene moments.
MOMENT_FLAVORS: tuple[str, ...] = ("seurat", "cell_ranger")

# statsmodels.robust.mad's consistency constant: Phi^{-1}(3/4).
_MAD_C = 0.6744897501960817


def check_flavor(flavor: str, allowed: tuple[str, ...] = FLAVORS) -> None:
    """Raise :class:`InputError` unless ``flavor`` is one of ``allowed``."""
    if flavor not in allowed:
        raise InputError(f"hvg flavor {flavor!r} not supported here; choose one of {list(allowed)}")


def moment_space(flavor: str) -> Literal["expm1", "log"]:
    """Which values the flavour's moments are taken over: expm1(x) or x."""
    check_flavor(flavor, MOMENT_FLAVORS)
    return "expm1" if flavor == "seurat" else "log"


def hvg_from_moments(
    mean: np.ndarray, var: np.ndarray, n_top: int, flavor: str = "seurat", n_bins: int = 20
) -> np.ndarray:
    """bool (G,) mask of the ``n_top`` most variable genes, from moments (G,).

    ``mean``/``var`` (unbiased, ddof=1) are over expm1(x) for 'seurat' and over
    x for 'cell_ranger' (see :func:`moment_space`); x is log1p-normalised.
    """
    import pandas as pd

    check_flavor(flavor, MOMENT_FLAVORS)
    mean = np.array(mean, dtype=np.float64)
    var = np.array(var, dtype=np.float64)
    mean[mean == 0] = 1e-12
    disp = var / mean
    if flavor == "seurat":
        disp[disp == 0] = np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            disp = np.log(disp)
        mean = np.log1p(mean)
        bins: int | np.ndarray = n_bins
    else:
        bins = np.r_[-np.inf, np.percentile(mean, np.arange(10, 105, 5)), np.inf]
    df = pd.DataFrame({"means": mean, "dispersions": disp})
    df["mean_bin"] = pd.cut(df["means"], bins=bins)
    grouped = df.groupby("mean_bin", observed=True)["dispersions"]
    if flavor == "seurat":
        stats = grouped.agg(avg="mean", dev="std")
        # a bin holding one gene has no std: scanpy sets that gene's normalised dispersion to 1
        one = stats["dev"].isnull()
        stats.loc[one, "dev"] = stats.loc[one, "avg"]
        stats.loc[one, "avg"] = 0
    else:
        stats = grouped.agg(
            avg="median",
            dev=lambda a: np.median(np.abs(a - np.median(a))) / _MAD_C if len(a) else np.nan,
        )
    stats = stats.loc[df["mean_bin"]].set_index(df.index)
    norm = ((df["dispersions"] - stats["avg"]) / stats["dev"]).to_numpy()
    return top_n_mask(norm, n_top)


def top_n_mask(score: np.ndarray, n_top: int) -> np.ndarray:
    """bool mask of entries with score >= the n-th highest (NaN never kept), as scanpy."""
    valid = score[~np.isnan(score)]
    if valid.size == 0:
        raise InputError("hvg: every gene has an undefined (NaN) normalised dispersion")
    n = min(n_top, valid.size)
    cutoff = np.sort(valid)[::-1][n - 1]
    return np.nan_to_num(score, nan=-np.inf) >= cutoff


def hvg_scanpy(adata, n_top: int, flavor: str = "seurat", counts_layer: str | None = None) -> np.ndarray:
    """bool (G,) mask from ``scanpy.pp.highly_variable_genes`` on an in-memory AnnData.

    X must be log1p-normalised; 'seurat_v3' reads raw counts from
    ``counts_layer`` instead (and needs the scikit-misc package).
    """
    import scanpy as sc

    check_flavor(flavor)
    if flavor == "seurat_v3":
        if counts_layer is None:
            raise InputError("hvg flavor 'seurat_v3' needs raw counts; this input is already log-normalised")
        try:
            res = sc.pp.highly_variable_genes(
                adata, n_top_genes=n_top, flavor=flavor, layer=counts_layer, inplace=False
            )
        except ImportError as err:
            raise InputError(f"hvg flavor 'seurat_v3' needs scikit-misc: {err}") from err
    else:
        import warnings

        with warnings.catch_warnings():  # said below in gpllm's words, not as scanpy's raw warning
            warnings.filterwarnings("ignore", message=".*n_top_genes.*normalized dispersions")
            res = sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor=flavor, inplace=False)
    mask = np.asarray(res["highly_variable"], dtype=bool)
    if mask.sum() < min(n_top, mask.size):
        log.warning(
            "n_hvg=%d: only %d of %d genes have a defined dispersion (flavor %r); keeping those %d",
            n_top,
            mask.sum(),
            mask.size,
            flavor,
            mask.sum(),
        )
    return mask

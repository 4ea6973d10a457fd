"""Top differentially expressed genes per perturbation (the metrics' gene sets).

Two definitions, matching GEARS and DESIGN.md:

* 't-test' (single cells): Welch's t of the perturbation's cells against all
  control cells, t = (m_p - m_0) / sqrt(v_p / n_p + v_0 / n_0) per gene, genes
  ranked by |t| (scanpy ``rank_genes_groups(method='t-test', rankby_abs=True,
  reference=control)``; an undefined t (0/0) counts as 0, as in scanpy).
* 'abs-delta' (pseudobulk only): genes ranked by |x_p - ctrl|.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

from gpllm.errors import InputError

DEMethod = Literal["t-test", "abs-delta"]


#: Rows ranked at once by :func:`top_k_abs`: bounds its working memory at any K.
TOP_K_BLOCK_ROWS = 1024


def top_k_abs(scores: np.ndarray, k: int) -> np.ndarray:
    """int64 (K, k): per row of ``scores`` (K, G), column indices of the k largest |score|.

    Most extreme first; ties keep the lower index: exactly
    ``argsort(-|scores|, stable)[:, :k]``, in O(K G) time rather than O(K G log G)
    (a partition, then a sort of the k chosen), one block of rows at a time.
    """
    scores = np.asarray(scores)
    if k > scores.shape[1]:
        raise InputError(f"top-{k} DE genes requested but only {scores.shape[1]} genes are measured")
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for start in range(0, scores.shape[0], TOP_K_BLOCK_ROWS):
        rows = slice(start, start + TOP_K_BLOCK_ROWS)
        out[rows] = _top_k_rows(np.abs(scores[rows]), k)
    return out


def _top_k_rows(a: np.ndarray, k: int) -> np.ndarray:
    """(B, k) ``argsort(-a, stable)[:, :k]`` for a (B, G) >= 0.

    A partition finds each row's k largest; if exactly k values reach the k-th
    largest they are the answer, ordered by (-value, index). A row where a tie
    straddles the k-th place (or a NaN is among them) is sorted in full instead,
    so which of the tied genes make the cut is the stable sort's choice.
    """
    if k == a.shape[1]:
        return np.argsort(-a, axis=1, kind="stable")
    chosen = np.argpartition(-a, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(a, chosen, axis=1)
    order = np.lexsort((chosen, -values), axis=1)
    top = np.take_along_axis(chosen, order, axis=1)
    kth = values.min(axis=1, keepdims=True)
    unsettled = np.flatnonzero((a >= kth).sum(axis=1) != k)
    if unsettled.size:
        top[unsettled] = np.argsort(-a[unsettled], axis=1, kind="stable")[:, :k]
    return top


def welch_t(
    mean: np.ndarray,
    var: np.ndarray,
    n: np.ndarray,
    mean0: np.ndarray,
    var0: np.ndarray,
    n0: int,
) -> np.ndarray:
    """(K, G) Welch t statistics of K groups (mean/var (K, G), n (K,)) against a reference.

    ``var``/``var0`` are unbiased (ddof=1) variances; ``mean0``/``var0`` are (G,).
    """
    n = np.asarray(n, dtype=np.float64)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (mean - mean0) / np.sqrt(var / n + var0 / n0)
    t[np.isnan(t)] = 0.0
    return t


def de_scanpy_ttest(adata, groupby: str, groups: Sequence[str], reference: str, k: int) -> np.ndarray:
    """int64 (len(groups), k) top-k genes per group by scanpy's Welch t-test vs ``reference``.

    Gene indices refer to ``adata.var_names``; X must be log-normalised. The
    result is written to and removed from ``adata.uns`` (pass a working copy).
    """
    import pandas as pd
    import scanpy as sc

    if k > adata.n_vars:
        raise InputError(f"top-{k} DE genes requested but only {adata.n_vars} genes are measured")
    key = "gpllm_rank_genes_groups"
    with warnings.catch_warnings():
        # scanpy fills its result table column by column (pandas PerformanceWarning per
        # group) and log2-fold-changes of non-log data warn; neither affects the scores
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        sc.tl.rank_genes_groups(
            adata,
            groupby=groupby,
            groups=[*groups, reference],
            reference=reference,
            method="t-test",
            rankby_abs=True,
            n_genes=k,
            use_raw=False,
            key_added=key,
        )
    res = adata.uns.pop(key)
    pos = {g: i for i, g in enumerate(adata.var_names)}
    names = res["names"]
    return np.array([[pos[names[i][g]] for i in range(k)] for g in groups], dtype=np.int64)

"""Chunked pseudobulk: per-perturbation moments of log-normalised cells, bounded memory.

A single-cell screen (Replogle K562 essential: 310,385 cells x 8,563 genes,
10.7 GB dense float32) need not fit in memory. Rows are read ``chunk_size`` at a
time from a backed AnnData, size-normalised and log1p'd per cell (which only
needs that cell's row), and folded into running sums per group k:

    n_k,  S_k = sum_{c in k} x_c,  Q_k = sum_{c in k} x_c^2         (K, G)

plus per-gene sums of expm1(x) and its square over all cells (for the 'seurat'
HVG rule). Means, unbiased variances and hence Welch t statistics and HVGs all
follow from these, so the result equals the in-memory scanpy path (tested)
while peak memory is O(K G + chunk_size G), not O(N G).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from gpllm.data.screens.labels import CONTROL, Labels
from gpllm.data.validate import check_expression
from gpllm.errors import CorruptFileError

log = logging.getLogger(__name__)

#: Name of the pooled control group (index 0 of every grouping).
CONTROL_GROUP = "__control__"


class Groups(NamedTuple):
    """Rows grouped by perturbation; group 0 pools every control row.

    codes : int64 (N,) group of each kept row.
    names : tuple of K names (CONTROL_GROUP first).
    kinds : int8 (K,) CONTROL / SINGLE / COMBO.
    """

    codes: np.ndarray
    names: tuple[str, ...]
    kinds: np.ndarray


def make_groups(labels: Labels) -> Groups:
    """Group kept rows by target, controls pooled into group 0; targets in first-seen order."""
    names = [CONTROL_GROUP]
    kinds = [CONTROL]
    pos: dict[str, int] = {}
    codes = np.zeros(labels.kind.shape[0], dtype=np.int64)
    for i, (k, t) in enumerate(zip(labels.kind, labels.target, strict=True)):
        if k == CONTROL:
            continue
        j = pos.get(t)
        if j is None:
            j = pos[t] = len(names)
            names.append(t)
            kinds.append(int(k))
        codes[i] = j
    return Groups(codes=codes, names=tuple(names), kinds=np.array(kinds, dtype=np.int8))


class Moments(NamedTuple):
    """Running sums over log-normalised cells, per group and per gene.

    n : int64 (K,) cells per group.
    s, q : float64 (K, G) per-group sums of x and x^2.
    e1, e2 : float64 (G,) per-gene sums of expm1(x) and expm1(x)^2 over all grouped cells.
    n_zero_total : cells with zero total counts (left at zero, as scanpy does).
    """

    n: np.ndarray
    s: np.ndarray
    q: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    n_zero_total: int

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        """(K, G) means and unbiased variances (0 where a group has one cell)."""
        n = self.n[:, None].astype(np.float64)
        mean = self.s / np.maximum(n, 1)
        var = (self.q - n * mean**2) / np.maximum(n - 1, 1)
        return mean, np.maximum(var, 0.0)

    def gene_moments(self, space: str) -> tuple[np.ndarray, np.ndarray]:
        """(G,) mean and unbiased variance over all cells of expm1(x) ('expm1') or x ('log')."""
        N = float(self.n.sum())
        if space == "expm1":
            s1, s2 = self.e1, self.e2
        else:
            s1, s2 = self.s.sum(axis=0), self.q.sum(axis=0)
        mean = s1 / N
        return mean, (s2 / N - mean**2) * (N / (N - 1))


def normalise_log1p(X, target_sum: float):
    """log1p(target_sum * X / rowsum(X)) for a dense (n, G) or CSR chunk; float64 copy.

    Rows with zero total stay zero (as ``scanpy.pp.normalize_total``). Returns
    (logx, normalised values before log1p, number of zero-total rows).
    """
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float64, copy=True)
        tot = np.asarray(X.sum(axis=1)).ravel()
        zero = tot == 0
        scale = np.where(zero, 0.0, target_sum / np.where(zero, 1.0, tot))
        X.data *= np.repeat(scale, np.diff(X.indptr))
        norm = X.copy()
        X.data = np.log1p(X.data)
        return X, norm, int(zero.sum())
    X = np.array(X, dtype=np.float64, copy=True)
    tot = X.sum(axis=1)
    zero = tot == 0
    X *= np.where(zero, 0.0, target_sum / np.where(zero, 1.0, tot))[:, None]
    return np.log1p(X), X, int(zero.sum())


def _map_values(X, fn):
    """fn applied to every stored value of dense or sparse X (fn(0) must be 0)."""
    if sp.issparse(X):
        Y = X.copy()
        Y.data = fn(Y.data)
        return Y
    return fn(X)


def _read_rows(X, a: int, b: int, where: str):
    """Rows a..b-1 of a backed matrix; a read failure names the file and rows."""
    try:
        return X[a:b]
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        # h5py reports a damaged chunk only when it is read, long after opening
        raise CorruptFileError(
            f"{where}: cannot read expression rows {a}..{b - 1} ({type(err).__name__}: {err}); "
            "the file is truncated or corrupt"
        ) from err


def _group_sums(X, codes: np.ndarray, K: int, out: np.ndarray) -> None:
    """out[k] += sum of rows of X (n, G) whose code is k (codes in [0, K))."""
    if sp.issparse(X):
        n = X.shape[0]
        S = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(K, n))
        R = (S @ X).tocoo()
        # canonical COO from a CSR product has no repeated (row, col): plain += is exact
        out[R.row, R.col] += R.data
        return
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    uniq, starts = np.unique(sc, return_index=True)
    out[uniq] += np.add.reduceat(X[order], starts, axis=0)


def accumulate_moments(
    X,
    codes: np.ndarray,
    K: int,
    *,
    genes,
    lognorm: bool,
    target_sum: float = 1e4,
    chunk_size: int = 4096,
    rows: np.ndarray | None = None,
    where: str = "X",
    on_chunk: Callable[[int, int], None] | None = None,
) -> Moments:
    """Stream rows of ``X`` (backed or in-memory, dense or CSR) into group moments.

    Parameters
    ----------
    X : (N_all, G) matrix supporting row slicing ``X[a:b]``.
    codes : int64 (N,) group of each row listed in ``rows`` (all rows if None).
    K : number of groups.
    lognorm : True if X is already log1p-normalised; else counts, normalised to
        ``target_sum`` per cell and log1p'd on the fly.
    rows : sorted int (N,) row indices of X to use (others skipped), or None.
    on_chunk : called as on_chunk(rows_done, rows_total) after each chunk.
    """
    N_all, G = X.shape
    if rows is None:
        row_code = codes
    else:
        row_code = np.full(N_all, -1, dtype=np.int64)
        row_code[rows] = codes
    n = np.zeros(K, dtype=np.int64)
    s = np.zeros((K, G))
    q = np.zeros((K, G))
    e1 = np.zeros(G)
    e2 = np.zeros(G)
    n_zero = 0
    for a in range(0, N_all, chunk_size):
        b = min(a + chunk_size, N_all)
        c = row_code[a:b]
        sel = np.flatnonzero(c >= 0)
        if sel.size == 0:
            if on_chunk:
                on_chunk(b, N_all)
            continue
        Xc = _read_rows(X, a, b, where)
        if sel.size < b - a:
            Xc = Xc[sel]
        c = c[sel]
        check_expression(Xc, where, genes, row_names=a + sel)  # file row numbers
        if lognorm:
            Xc = sp.csr_matrix(Xc, dtype=np.float64) if sp.issparse(Xc) else np.asarray(Xc, dtype=np.float64)
            E = _map_values(Xc, np.expm1)
        else:
            Xc, E, z = normalise_log1p(Xc, target_sum)
            n_zero += z
        n += np.bincount(c, minlength=K)
        _group_sums(Xc, c, K, s)
        _group_sums(_map_values(Xc, np.square), c, K, q)
        e1 += np.asarray(E.sum(axis=0)).ravel()
        e2 += np.asarray(_map_values(E, np.square).sum(axis=0)).ravel()
        if on_chunk:
            on_chunk(b, N_all)
    if n_zero:
        log.warning("%s: %d cell(s) with zero total counts kept as all-zero profiles", where, n_zero)
    return Moments(n=n, s=s, q=q, e1=e1, e2=e2, n_zero_total=n_zero)

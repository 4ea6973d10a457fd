"""Checks shared by the data layer: unique names, finite values, known columns.

Each check raises an error from :mod:`gpllm.errors` that names the offending
file, gene or column, so a bad input is caught at the boundary rather than as a
NaN deep inside a fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from gpllm.errors import CorruptFileError, DataError, NonFiniteError


def preview(items: Iterable[object], k: int = 5) -> str:
    """The first ``k`` items as a comma-separated string, with '...' if cut."""
    items = list(items)
    head = ", ".join(repr(str(x)) for x in items[:k])
    return head + (", ..." if len(items) > k else "")


def check_unique(names: Sequence[str], what: str, where: str) -> None:
    """Raise :class:`DataError` listing the duplicated entries of ``names``.

    ``what`` says what the names are ('gene names'), ``where`` where they were
    read from (a file or column), both used in the message.
    """
    counts = Counter(names)
    dup = [n for n, c in counts.items() if c > 1]
    if dup:
        raise DataError(f"{where}: {len(dup)} duplicated {what}: {preview(dup)} (each must appear once)")


def check_finite(
    x: np.ndarray,
    what: str,
    where: str,
    col_names: Sequence[str] | None = None,
    row_names: Sequence[str] | None = None,
) -> None:
    """Raise :class:`NonFiniteError` if ``x`` (N,) or (N, M) holds NaN or inf.

    The message names the rows (e.g. perturbations) and columns (e.g. genes)
    that hold the bad values, when their names are given.
    """
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    msg = f"{where}: {what} holds {int(bad.sum())} non-finite value(s) (NaN or inf)"
    if x.ndim == 2:
        rows = np.flatnonzero(bad.any(axis=1))
        cols = np.flatnonzero(bad.any(axis=0))
        if col_names is not None:
            msg += f"; in column(s) {preview([col_names[j] for j in cols])}"
        if row_names is not None:
            msg += f"; in row(s) {preview([row_names[i] for i in rows])}"
    elif row_names is not None:
        msg += f"; at {preview([row_names[i] for i in np.flatnonzero(bad)])}"
    raise NonFiniteError(msg)


def check_not_all_zero(X, what: str, where: str) -> None:
    """DataError if ``X`` (dense or sparse, non-empty) holds no value other than 0: an empty or
    placeholder matrix, on which every delta, correlation and fit would be meaningless."""
    nonzero = X.count_nonzero() if sp.issparse(X) else np.count_nonzero(X)
    if np.prod(X.shape) and not nonzero:
        raise DataError(
            f"{where}: every value of {what} ({' x '.join(str(n) for n in X.shape)}) is 0: nothing to fit "
            "or score; is it the right file?"
        )


def require_columns(columns: Iterable[str], needed: Iterable[str], where: str) -> None:
    """Raise :class:`DataError` naming each column of ``needed`` missing from ``columns``."""
    have = list(columns)
    missing = [c for c in needed if c not in have]
    if missing:
        raise DataError(f"{where}: missing column(s) {preview(missing)}; available: {preview(have, 20)}")


def check_sparse_layout(X, where: str) -> None:
    """Raise :class:`CorruptFileError` unless sparse ``X`` has a valid CSR/CSC layout.

    A damaged file can hold out-of-range column indices or a non-monotone
    indptr; scipy builds such a matrix without complaint and later crashes or
    reads foreign memory, so this full check runs before any arithmetic.
    Dense X passes.
    """
    if not sp.issparse(X):
        return
    try:
        X.check_format(full_check=True)
    except ValueError as err:
        raise CorruptFileError(
            f"{where}: expression X is not a valid sparse matrix ({err}); "
            "the file is corrupt: delete it and fetch it again"
        ) from err


def check_indptr(indptr: np.ndarray, n_rows: int, nnz: int, where: str) -> None:
    """Raise :class:`CorruptFileError` unless ``indptr`` (n_rows + 1,) runs monotonely from 0 to nnz."""
    ok = indptr.shape == (n_rows + 1,) and indptr[0] == 0 and indptr[-1] == nnz and bool((np.diff(indptr) >= 0).all())
    if not ok:
        raise CorruptFileError(
            f"{where}: the sparse row pointer of X is inconsistent with {n_rows} rows and "
            f"{nnz} stored values; the file is corrupt: delete it and fetch it again"
        )


def check_expression(X, where: str, genes: Sequence[str], row_names: Sequence[object] | None = None) -> None:
    """Raise unless expression ``X`` (n, G), dense or sparse, is finite and >= 0.

    Counts and log1p-normalised values are never negative. The message names
    the genes and rows (``row_names``, (n,), e.g. cell IDs; default row numbers)
    holding bad values: :class:`NonFiniteError` for NaN/inf, :class:`DataError`
    for negatives; :class:`CorruptFileError` for a broken sparse layout.
    """
    check_sparse_layout(X, where)
    if sp.issparse(X):
        X = sp.csr_matrix(X)  # data must be in row order for the row lookup below
    data = X.data if sp.issparse(X) else np.asarray(X)
    bad = ~np.isfinite(data)
    error, what = NonFiniteError, "NaN/inf"
    if not bad.any():
        bad = data < 0
        error, what = DataError, "negative values (counts and log1p data cannot be negative)"
        if not bad.any():
            return
    rows_named = list(range(X.shape[0])) if row_names is None else row_names
    if sp.issparse(X):
        rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[bad]
        cols = X.indices[bad]
    else:
        rows, cols = np.nonzero(bad)
    raise error(
        f"{where}: expression holds {what} in gene(s) {preview([genes[j] for j in np.unique(cols)])}; "
        f"row(s) {preview([rows_named[i] for i in np.unique(rows)])}"
    )

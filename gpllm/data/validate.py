"""Checks shared by the data layer: unique names, finite values, known columns.

Each check raises an error from :mod:`gpllm.errors` that names the offending
file, gene or column, so a bad input is caught at the boundary rather than as a
NaN deep inside a fit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from gpllm.errors import DataError, NonFiniteError


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
        raise DataError(
            f"{where}: {len(dup)} duplicated {what}: {preview(dup)} "
            f"(each must appear once)"
        )


def check_finite(
    x: np.ndarray, what: str, where: str, col_names: Sequence[str] | None = None,
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


def require_columns(columns: Iterable[str], needed: Iterable[str], where: str) -> None:
    """Raise :class:`DataError` naming each column of ``needed`` missing from ``columns``."""
    have = list(columns)
    missing = [c for c in needed if c not in have]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {preview(missing)}; available: {preview(have, 20)}"
        )

"""``GeneVectors``: raw per-gene embedding vectors, keyed by gene symbol."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpllm.data.validate import check_finite, check_not_all_zero, check_unique, preview
from gpllm.errors import EmbeddingError, ShapeError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class GeneVectors:
    """N genes' raw vectors: ``X`` (N, D) float64, row i belongs to ``names[i]``.

    ``source`` names where they came from (a file, or a generator) and is used
    in every message about them. Names must be unique and values finite.
    """

    names: tuple[str, ...]
    X: np.ndarray
    source: str = "arrays"

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        X = np.array(self.X, dtype=np.float64, copy=True)
        if X.ndim != 2 or X.shape[0] != len(names):
            raise ShapeError(f"{self.source}: vectors have shape {X.shape}, expected ({len(names)}, D)")
        check_unique(names, "gene names", self.source)
        check_finite(X, "embedding", self.source, row_names=names)
        check_not_all_zero(X, "its vectors", self.source)
        X.setflags(write=False)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "X", X)

    @property
    def dim(self) -> int:
        """D, the vector length."""
        return int(self.X.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"GeneVectors(N={len(self)}, D={self.dim}, source={self.source!r})"

    def check_dim(self, dim: int | None) -> GeneVectors:
        """Self, or :class:`EmbeddingError` if the vectors are not ``dim``-dimensional."""
        if dim is not None and self.dim != dim:
            raise EmbeddingError(f"{self.source}: vectors are {self.dim}-dimensional, expected {dim}")
        return self

    def subset(self, names: Sequence[str]) -> GeneVectors:
        """Rows for ``names``, in that order (all must be present)."""
        pos = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in pos]
        if missing:
            raise EmbeddingError(f"{self.source}: no vector for {preview(missing)}")
        return GeneVectors(tuple(names), self.X[[pos[n] for n in names]], self.source)

    def drop_zero_rows(self) -> GeneVectors:
        """Without all-zero rows (placeholders such as GenePT's 'ctrl'); logs which went."""
        zero = ~self.X.any(axis=1)
        if not zero.any():
            return self
        gone = [n for n, z in zip(self.names, zero, strict=True) if z]
        log.warning(
            "%s: dropped %d all-zero vector(s) (placeholders, not genes): %s", self.source, len(gone), preview(gone)
        )
        keep = np.flatnonzero(~zero)
        return GeneVectors(tuple(self.names[i] for i in keep), self.X[keep], self.source)

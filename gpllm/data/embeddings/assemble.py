"""Gene embeddings aligned to a screen's perturbations, PCA-reduced, in blocks.

Pipeline: load raw vectors per source (:mod:`gpllm.data.embeddings.files`:
GenePT pickle, tables, UniProt ProtT5 h5), align them to the perturbation list
with an explicit missing-gene policy and a coverage report, reduce each source
to its top k principal components (k = 50 as in the paper), and concatenate the
sources into one :class:`Embedding` whose ``blocks`` record which columns came
from which source, so a kernel can treat each block on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import numpy as np

from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.validate import check_finite, check_unique, preview
from gpllm.errors import EmbeddingError, InputError, ShapeError
from gpllm.readonly import PicklesThroughInit

log = logging.getLogger(__name__)

MissingPolicy = Literal["drop", "mean"]


# ------------------------------------------------------------------ Embedding
@dataclass(frozen=True, eq=False)
class Embedding(PicklesThroughInit):
    """Model inputs: ``Z`` (P, Q) float64, row i for perturbation ``names[i]``.

    ``blocks`` is a tuple of (name, start, stop): columns ``Z[:, start:stop]``
    came from source ``name`` (e.g. ('text', 0, 50), ('sequence', 50, 100)).
    Blocks are contiguous, ordered, and cover all Q columns.
    """

    Z: np.ndarray
    names: tuple[str, ...]
    blocks: tuple[tuple[str, int, int], ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Z = np.array(self.Z, dtype=np.float64, copy=True)
        names = tuple(str(n) for n in self.names)
        blocks = tuple((str(b), int(s), int(e)) for b, s, e in self.blocks)
        if Z.ndim != 2 or Z.shape[0] != len(names):
            raise ShapeError(f"Embedding: Z has shape {Z.shape}, expected ({len(names)}, Q)")
        check_unique(names, "perturbation names", "Embedding.names")
        check_unique([b for b, _, _ in blocks], "block names", "Embedding.blocks")
        check_finite(Z, "Z", "Embedding", row_names=names)
        pos = 0
        for b, s, e in blocks:
            if s != pos or e <= s:
                raise ShapeError(
                    f"Embedding: block {b!r} spans [{s}, {e}), expected to start at {pos} and be non-empty"
                )
            pos = e
        if pos != Z.shape[1]:
            raise ShapeError(f"Embedding: blocks cover {pos} columns, Z has {Z.shape[1]}")
        Z.setflags(write=False)
        set_ = object.__setattr__
        set_(self, "Z", Z)
        set_(self, "names", names)
        set_(self, "blocks", blocks)
        set_(self, "provenance", MappingProxyType(dict(self.provenance)))

    @property
    def dim(self) -> int:
        """Q, the number of columns."""
        return int(self.Z.shape[1])

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(b for b, _, _ in self.blocks)

    def block_slice(self, name: str) -> slice:
        """Column slice of block ``name``."""
        for b, s, e in self.blocks:
            if b == name:
                return slice(s, e)
        raise InputError(f"Embedding: no block {name!r}; blocks are {list(self.block_names)}")

    def block(self, name: str) -> Embedding:
        """The embedding restricted to one block."""
        sl = self.block_slice(name)
        return replace(self, Z=self.Z[:, sl], blocks=((name, 0, sl.stop - sl.start),))

    def select(self, names: Sequence[str]) -> Embedding:
        """Rows for ``names`` in that order (all must be present)."""
        pos = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in pos]
        if missing:
            raise EmbeddingError(f"Embedding: no row for {preview(missing)}")
        return replace(self, Z=self.Z[[pos[n] for n in names]], names=tuple(names))

    def __repr__(self) -> str:
        return f"Embedding(P={len(self.names)}, Q={self.dim}, blocks={list(self.blocks)})"


def concat(*embeddings: Embedding) -> Embedding:
    """Column-wise concatenation of embeddings with identical ``names``; blocks shifted."""
    if not embeddings:
        raise InputError("concat: give at least one Embedding")
    names = embeddings[0].names
    for e in embeddings[1:]:
        if e.names != names:
            raise ShapeError("concat: embeddings must list the same perturbations in the same order; align them first")
    blocks, off = [], 0
    for e in embeddings:
        for b, s, t in e.blocks:
            blocks.append((b, s + off, t + off))
        off += e.dim
    prov = {f"{b}": dict(e.provenance) for e in embeddings for b in e.block_names}
    return Embedding(np.hstack([e.Z for e in embeddings]), names, tuple(blocks), prov)


# ---------------------------------------------------------------- alignment
class Coverage(NamedTuple):
    """How many of the perturbations one source embeds."""

    source: str
    n_perts: int
    n_found: int
    missing: tuple[str, ...]

    def line(self) -> str:
        pct = 100.0 * self.n_found / max(self.n_perts, 1)
        return (
            f"{self.source}: {self.n_found}/{self.n_perts} perturbations embedded ({pct:.1f}%), "
            f"{len(self.missing)} missing"
        )


def coverage(perts: Sequence[str], sources: Mapping[str, GeneVectors]) -> list[Coverage]:
    """Per source, how many of ``perts`` have a vector (and which do not)."""
    out = []
    for name, vec in sources.items():
        have = set(vec.names)
        missing = tuple(p for p in perts if p not in have)
        out.append(Coverage(name, len(perts), len(perts) - len(missing), missing))
    return out


def coverage_report(cov: Sequence[Coverage], missing: MissingPolicy = "drop") -> str:
    """The coverage report as text: one line per source, then what the policy did.

    Under 'drop' the last line counts the perturbations lacking any source's
    vector (they leave the screen); under 'mean' it counts the imputed rows.
    """
    lines = [c.line() + (f" (e.g. {preview(c.missing, 3)})" if c.missing else "") for c in cov]
    if missing == "drop":
        gone = set().union(*(c.missing for c in cov))
        lines.append(f"missing='drop': {len(gone)} of {cov[0].n_perts if cov else 0} perturbations dropped")
    else:
        lines.append(f"missing='mean': {sum(len(c.missing) for c in cov)} row(s) imputed with the source mean")
    return "\n".join(lines)


def log_coverage(cov: Sequence[Coverage], missing: MissingPolicy = "drop") -> None:
    """Log :func:`coverage_report` (a warning when any perturbation lacks a vector)."""
    level = logging.WARNING if any(c.missing for c in cov) else logging.INFO
    log.log(level, "embedding coverage\n%s", coverage_report(cov, missing))


def align(
    sources: Mapping[str, GeneVectors], perts: Sequence[str], missing: MissingPolicy = "drop", *, quiet: bool = False
) -> tuple[tuple[str, ...], dict[str, np.ndarray], list[Coverage]]:
    """Rows of every source for ``perts``, under one missing-gene policy.

    'drop' (default) keeps the perturbations every source embeds, in the order
    of ``perts``; 'mean' keeps all and fills a missing row with that source's
    mean over the perturbations it does embed. Either way the counts are
    logged (unless ``quiet``: a caller that reports coverage itself) and returned
    as a coverage report. A source sharing no gene with ``perts`` raises
    :class:`EmbeddingError`.

    Returns (kept perturbations, {source: (P', D_source)}, coverage).
    """
    if missing not in ("drop", "mean"):
        raise InputError(f"missing must be 'drop' or 'mean', got {missing!r}")
    if not sources:
        raise InputError("align: give at least one embedding source")
    perts = [str(p) for p in perts]
    check_unique(perts, "perturbation names", "align")
    cov = coverage(perts, sources)
    for c in cov:
        vec = sources[c.source]
        if c.n_found == 0:
            raise EmbeddingError(
                f"{vec.source}: no overlap between its {len(vec)} genes (e.g. {preview(vec.names[:5])}) "
                f"and the {len(perts)} perturbations (e.g. {preview(perts[:5])})"
            )
    if not quiet:
        log_coverage(cov, missing)
    if missing == "drop":
        gone = set().union(*(c.missing for c in cov))
        kept = tuple(p for p in perts if p not in gone)
        if not kept:
            raise EmbeddingError(f"align: no perturbation is embedded by every source ({list(sources)})")
        return kept, {n: v.subset(kept).X for n, v in sources.items()}, cov
    out = {}
    for n, v in sources.items():
        pos = {g: i for i, g in enumerate(v.names)}
        found = [pos[p] for p in perts if p in pos]
        fill = v.X[found].mean(axis=0)
        out[n] = np.stack([v.X[pos[p]] if p in pos else fill for p in perts])
    return tuple(perts), out, cov


# ---------------------------------------------------------------- reduction
class PCA(NamedTuple):
    """Principal components of X (N, D): scores (N, k), components (k, D), variances (k,)."""

    scores: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    mean: np.ndarray


def pca(X: np.ndarray, k: int = 50, where: str = "pca") -> PCA:
    """Top-k principal components of X (N, D) by thin SVD of the centred matrix.

    X - mean = U S V^T; scores = U_k S_k, components = V_k^T, variances
    S_k^2 / (N - 1). Signs are fixed so that each component's largest-magnitude
    loading is positive (deterministic whatever the LAPACK build). k is capped
    at min(N, D) with a log line.
    """
    X = np.asarray(X, dtype=np.float64)
    if k < 1:
        raise InputError(f"{where}: k must be >= 1, got {k}")
    if X.ndim != 2 or X.shape[0] < 2:
        raise ShapeError(f"{where}: PCA needs a 2-D array with >= 2 rows, got shape {X.shape}")
    check_finite(X, "input", where)
    kmax = min(X.shape)
    if k > kmax:
        log.info("%s: k=%d > min(N, D)=%d: using %d components", where, k, kmax, kmax)
        k = kmax
    mu = X.mean(axis=0)
    U, S, Vt = np.linalg.svd(X - mu, full_matrices=False)
    U, S, Vt = U[:, :k], S[:k], Vt[:k]
    sign = np.sign(Vt[np.arange(k), np.argmax(np.abs(Vt), axis=1)])
    sign[sign == 0] = 1.0
    U *= sign
    Vt = Vt * sign[:, None]
    return PCA(scores=U * S, components=Vt, explained_variance=S**2 / (X.shape[0] - 1), mean=mu)


def build_embedding(
    sources: Mapping[str, GeneVectors],
    perts: Sequence[str],
    *,
    k: int | None = 50,
    missing: MissingPolicy = "drop",
    scale: Literal["block", "none"] = "block",
    quiet: bool = False,
) -> Embedding:
    """Align sources to ``perts``, PCA each to k components, concatenate as blocks.

    ``k=None`` keeps the raw vectors. ``scale='block'`` divides each block by
    the square root of its total variance so blocks of different raw scales
    weigh alike under one shared lengthscale (a uniform rescaling a single
    block's lengthscale absorbs). PCA is fitted on the aligned perturbations'
    vectors, unsupervised. The result's names are the kept perturbations:
    select the screen's rows with them (``data.select(emb.names)``).
    """
    if scale not in ("block", "none"):
        raise InputError(f"scale must be 'block' or 'none', got {scale!r}")
    kept, aligned, cov = align(sources, perts, missing, quiet=quiet)
    parts, blocks, prov, off = [], [], {}, 0
    for name, X in aligned.items():
        if k is None:
            Z, ev = X - X.mean(axis=0), X.var(axis=0, ddof=1)
        else:
            res = pca(X, k, where=f"{name} PCA")
            Z, ev = res.scores, res.explained_variance
        total = float(ev.sum())
        if scale == "block" and total > 0:
            Z = Z / np.sqrt(total)
        parts.append(Z)
        blocks.append((name, off, off + Z.shape[1]))
        off += Z.shape[1]
        c = next(c for c in cov if c.source == name)
        prov[name] = {
            "source": sources[name].source,
            "raw_dim": int(X.shape[1]),
            "k": int(Z.shape[1]),
            "n_found": c.n_found,
            "n_missing": len(c.missing),
        }
    prov["missing_policy"] = missing
    prov["scale"] = scale
    kept_set = set(kept)
    prov["dropped"] = tuple(p for p in map(str, perts) if p not in kept_set)
    prov["n_dropped"] = len(prov["dropped"])
    return Embedding(np.hstack(parts), kept, tuple(blocks), prov)

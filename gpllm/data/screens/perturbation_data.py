"""``PerturbationData``: one processed Perturb-seq screen, the data layer's output.

A screen is summarised per perturbation: the mean log-normalised expression
profile of the cells that received it, the mean control profile, and the top DE
genes that the metrics are restricted to. Everything downstream (models,
metrics, sweeps) takes these arrays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from gpllm.atomic import write_h5ad
from gpllm.data.validate import check_finite, check_not_all_zero, check_unique, preview
from gpllm.errors import DataError, InputError, ShapeError
from gpllm.readonly import PicklesThroughInit

log = logging.getLogger(__name__)

#: Key under ``AnnData.uns`` that marks an h5ad written by :meth:`PerturbationData.to_anndata`.
UNS_KEY = "gpllm_perturbation_data"
_FORMAT_VERSION = 1
#: A screen with fewer perturbations cannot be split for training and testing.
MIN_PERTS = 2


def _readonly(x: np.ndarray) -> np.ndarray:
    """A read-only copy of ``x``; a read-only file mapping as it is (nothing can write to it,
    and worker processes share its pages: :mod:`gpllm.evaluate.runner.shared_inputs`)."""
    if _mapped_readonly(x):
        return x
    x = np.array(x, copy=True)
    x.setflags(write=False)
    return x


def _mapped_readonly(x) -> bool:
    return isinstance(x, np.memmap) and getattr(x, "mode", None) == "r" and x.dtype == np.float64


@dataclass(frozen=True, eq=False)
class PerturbationData(PicklesThroughInit):
    """A processed screen: P perturbations x G measured genes.

    Attributes
    ----------
    Y : float64 (P, G)
        Mean log-normalised expression per perturbation, ``x_p``.
    ctrl : float64 (G,)
        Mean log-normalised expression of the control cells, ``x_ctrl``.
    de : int64 (P, k)
        Per perturbation, indices into ``genes`` of its top-k DE genes, most
        differential first (k = 20 by default).
    perts : tuple of P str
        Perturbation names: the knocked-out gene symbol ("A+B" for a two-gene
        perturbation).
    genes : tuple of G str
        Measured gene names.
    provenance : mapping
        JSON-serialisable record of how the arrays were made (source file,
        normalisation, HVG flavour, DE method, counts of what was dropped).

    Arrays are copied and made read-only; names must be unique, values finite,
    and P >= ``MIN_PERTS`` (2).
    The response to perturbation p is ``delta[p] = Y[p] - ctrl``.
    """

    Y: np.ndarray
    ctrl: np.ndarray
    de: np.ndarray
    perts: tuple[str, ...]
    genes: tuple[str, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        perts = tuple(str(p) for p in self.perts)
        genes = tuple(str(g) for g in self.genes)
        Y = self.Y if _mapped_readonly(self.Y) else np.asarray(self.Y, dtype=np.float64)
        ctrl = np.asarray(self.ctrl, dtype=np.float64)
        de = np.asarray(self.de)
        P, G = len(perts), len(genes)
        if P < MIN_PERTS:
            raise DataError(
                f"PerturbationData ({self.provenance.get('source', 'no source')}): "
                f"{P} perturbation(s) {preview(perts)}; at least {MIN_PERTS} needed"
            )
        if Y.shape != (P, G):
            raise ShapeError(f"PerturbationData: Y has shape {Y.shape}, expected (P, G) = ({P}, {G})")
        if ctrl.shape != (G,):
            raise ShapeError(f"PerturbationData: ctrl has shape {ctrl.shape}, expected (G,) = ({G},)")
        if de.ndim != 2 or de.shape[0] != P:
            raise ShapeError(f"PerturbationData: de has shape {de.shape}, expected (P, k) with P = {P}")
        if de.size and not np.issubdtype(de.dtype, np.integer):
            raise InputError(f"PerturbationData: de must hold integer gene indices, got {de.dtype}")
        de = de.astype(np.int64)
        if de.size and (de.min() < 0 or de.max() >= G):
            raise InputError(f"PerturbationData: de indices must lie in [0, {G}), got [{de.min()}, {de.max()}]")
        if de.shape[1] > 1:
            srt = np.sort(de, axis=1)
            rep = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
            if rep.size:
                raise InputError(f"PerturbationData: repeated DE gene index for {preview([perts[i] for i in rep])}")
        check_unique(perts, "perturbation names", "PerturbationData.perts")
        check_unique(genes, "gene names", "PerturbationData.genes")
        check_finite(Y, "Y", "PerturbationData", genes, perts)
        check_finite(ctrl, "ctrl", "PerturbationData", row_names=genes)
        where = f"PerturbationData ({self.provenance.get('source', 'no source')})"
        check_not_all_zero(Y, "the expression profiles Y", where)
        try:
            # a JSON round trip makes the record exactly what save/load gives back
            prov = json.loads(json.dumps(dict(self.provenance)))
        except (TypeError, ValueError) as err:
            raise InputError(f"PerturbationData: provenance must be JSON-serialisable ({err})") from err
        set_ = object.__setattr__
        set_(self, "Y", _readonly(Y))
        set_(self, "ctrl", _readonly(ctrl))
        set_(self, "de", _readonly(de))
        set_(self, "perts", perts)
        set_(self, "genes", genes)
        set_(self, "provenance", MappingProxyType(prov))

    # ------------------------------------------------------------------ views
    @property
    def n_perts(self) -> int:
        """P, the number of perturbations."""
        return len(self.perts)

    @property
    def n_genes(self) -> int:
        """G, the number of measured genes."""
        return len(self.genes)

    @property
    def delta(self) -> np.ndarray:
        """(P, G) responses relative to control, ``Y - ctrl``."""
        return self.Y - self.ctrl

    def index(self, perts: Sequence[str]) -> np.ndarray:
        """(n,) row indices of ``perts``; :class:`DataError` names any unknown one."""
        pos = {p: i for i, p in enumerate(self.perts)}
        unknown = [p for p in perts if p not in pos]
        if unknown:
            raise DataError(f"PerturbationData: unknown perturbation(s) {preview(unknown)}")
        return np.array([pos[p] for p in perts], dtype=np.int64)

    def select(self, perts: Sequence[str], note: str | None = None) -> PerturbationData:
        """The screen restricted to ``perts``, in that order.

        ``note``, if given, is appended to provenance['steps'] (e.g. why rows went).
        """
        idx = self.index(list(perts))
        prov = dict(self.provenance)
        if note:
            prov["steps"] = [*prov.get("steps", []), note]
        return replace(self, Y=self.Y[idx], de=self.de[idx], perts=tuple(perts), provenance=prov)

    def with_provenance(self, **updates: Any) -> PerturbationData:
        """A copy with ``provenance`` updated by ``updates``."""
        return replace(self, provenance={**self.provenance, **updates})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PerturbationData):
            return NotImplemented
        return (
            self.perts == other.perts
            and self.genes == other.genes
            and np.array_equal(self.Y, other.Y)
            and np.array_equal(self.ctrl, other.ctrl)
            and np.array_equal(self.de, other.de)
            and dict(self.provenance) == dict(other.provenance)
        )

    __hash__ = None  # type: ignore[assignment]  # arrays make it unhashable

    def __repr__(self) -> str:
        return (
            f"PerturbationData(P={self.n_perts}, G={self.n_genes}, k_de={self.de.shape[1]}, "
            f"source={self.provenance.get('source', '?')!r})"
        )

    # --------------------------------------------------------------- AnnData
    def to_anndata(self):
        """An AnnData: X = Y (P, G), var['ctrl'] = ctrl, obsm['de'] = de, provenance in uns."""
        import anndata as ad
        import pandas as pd

        obs = pd.DataFrame(index=pd.Index(self.perts, name="perturbation"))
        var = pd.DataFrame({"ctrl": np.array(self.ctrl)}, index=pd.Index(self.genes, name="gene"))
        adata = ad.AnnData(X=np.array(self.Y), obs=obs, var=var)
        adata.obsm["de"] = np.array(self.de)
        adata.uns[UNS_KEY] = {
            "format_version": _FORMAT_VERSION,
            "provenance_json": json.dumps(dict(self.provenance)),
        }
        return adata

    @classmethod
    def from_anndata(cls, adata, where: str = "AnnData") -> PerturbationData:
        """Inverse of :meth:`to_anndata`; ``where`` names the source in errors."""
        meta = adata.uns.get(UNS_KEY)
        if meta is None or "de" not in adata.obsm or "ctrl" not in adata.var:
            raise DataError(
                f"{where}: not a gpllm PerturbationData (needs uns[{UNS_KEY!r}], "
                "obsm['de'] and var['ctrl']); process the raw screen first: "
                "gpllm data process SCREEN.h5ad --preset ... --out screen.h5ad"
            )
        version = int(meta.get("format_version", -1))
        if version != _FORMAT_VERSION:
            raise DataError(f"{where}: PerturbationData format version {version}, this gpllm reads {_FORMAT_VERSION}")
        X = adata.X
        if hasattr(X, "toarray"):
            X = X.toarray()
        check_not_all_zero(np.asarray(X), "its expression profiles X", where)
        return cls(
            Y=np.asarray(X),
            ctrl=np.asarray(adata.var["ctrl"]),
            de=np.asarray(adata.obsm["de"]),
            perts=tuple(adata.obs_names),
            genes=tuple(adata.var_names),
            provenance=json.loads(str(meta["provenance_json"])),
        )

    def save(self, path: str | Path) -> Path:
        """Write as h5ad (see :meth:`to_anndata`), atomically; returns the path."""
        return write_h5ad(path, self.to_anndata())

    @classmethod
    def load(cls, path: str | Path) -> PerturbationData:
        """Read an h5ad written by :meth:`save`."""
        from gpllm.data.screens.h5ad import read_h5ad

        return cls.from_anndata(read_h5ad(path), where=str(path))


def shared_perturbations(sources: Mapping[str, Sequence[str]], minimum: int = 1) -> tuple[str, ...]:
    """The perturbations every source names, in the first source's order.

    ``sources``: ``{"screen K562": perts, "embedding text": names, ...}``. Logs
    (warning) how many each source loses; DataError naming the sources if fewer
    than ``minimum`` are shared.
    """
    if not sources:
        raise InputError("shared_perturbations: give at least one source")
    keep = set.intersection(*(set(perts) for perts in sources.values()))
    shared = tuple(p for p in next(iter(sources.values())) if p in keep)
    if len(shared) < minimum:
        raise DataError(
            f"{preview(sources)} share {len(shared)} perturbation(s) {preview(shared)}; at least {minimum} "
            f"needed (the first has {preview(next(iter(sources.values())))})"
        )
    for name, perts in sources.items():
        if len(perts) > len(shared):
            log.warning(
                "%s: %d of %d perturbations are not shared by all inputs and are left out",
                name,
                len(perts) - len(shared),
                len(perts),
            )
    return shared


def intersect_perturbations(*screens: PerturbationData) -> tuple[PerturbationData, ...]:
    """Restrict screens to the perturbations present in all of them (:func:`shared_perturbations`).

    Order follows the first screen. Each screen's dropped count is logged and
    recorded in its provenance (the paper keeps the 1774 perturbations shared by
    K562 and RPE1). Genes are left alone: each screen keeps its own HVGs.
    """
    if not screens:
        raise InputError("intersect_perturbations: give at least one screen")
    sources = [s.provenance.get("source", f"screen {i}") for i, s in enumerate(screens)]
    names = [name if sources.count(name) == 1 else f"{name} ({i})" for i, name in enumerate(sources)]
    keep = shared_perturbations(dict(zip(names, (s.perts for s in screens))), minimum=MIN_PERTS)
    out = []
    for s in screens:
        dropped = s.n_perts - len(keep)
        out.append(
            s.select(keep, note=f"intersect: kept {len(keep)} shared perturbations, dropped {dropped}").with_provenance(
                n_dropped_not_shared=dropped
            )
        )
    return tuple(out)


__all__ = ["MIN_PERTS", "PerturbationData", "UNS_KEY", "intersect_perturbations", "shared_perturbations"]

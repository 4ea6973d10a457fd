"""A model fitted on one screen, saved without pickle and restored exactly.

``gpllm fit`` trains once; ``gpllm predict`` later predicts for gene symbols
the screen never perturbed. Two things must survive between the commands:

* the embedding map. Each source's PCA is fitted on the *training*
  perturbations' raw vectors (as :func:`gpllm.data.embeddings.assemble.build_embedding`
  does, block-scaled) and kept as (mean, components, scale), so a new gene's
  raw vector x maps to ``z = (x - mean) @ components.T / scale``, the same
  coordinates the model was trained in;
* the model. Its state holds JAX pytrees (a Cholesky factor, a PRNG key), so
  instead of pickling it the file keeps the model's spec (a built-in name or
  the user's ``module:attr`` references), the training arrays and the
  model's record of what its fit chose (:mod:`gpllm.models.base`: a GP's raw
  hyperparameters, exact in float64); loading rebuilds the state through the
  model's ``restore`` (a GP is reconditioned, deterministic models refitted).

File layout: one ``.npz`` (read with ``allow_pickle=False``) holding ``meta``
(a JSON string: format, model spec, seed, perturbation and gene names, the
block layout, the record, provenance) and the arrays ``Z`` (N, Q), ``Y``
(N, G), ``ctrl`` (G,), ``proj{i}_mean`` (D_i,), ``proj{i}_components``
(k_i, D_i), ``proj{i}_scale`` () per block i.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from gpllm.atomic import write_bytes_from
from gpllm.data.embeddings.assemble import align, pca
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.data.validate import check_unique, preview
from gpllm.errors import CorruptFileError, DataError, EmbeddingError, InputError, MissingFileError, NonFiniteError
from gpllm.models.base import Model, Prediction, record_of, variance_per_gene
from gpllm.models.base import restore as restore_state
from gpllm.models.registry import BuildContext, ModelSpec, spec_from
from gpllm.readonly import PicklesThroughInit

FORMAT = "gpllm-fitted-model"
VERSION = 2


# ------------------------------------------------------------------ embedding map
@dataclass(frozen=True, eq=False)
class BlockProjection:
    """One source's PCA map: raw vectors (n, D) -> block coordinates (n, k).

    mean: (D,) training mean; components: (k, D) principal axes; scale: the
    block scale sqrt(total explained variance) (1 when it is 0).
    """

    name: str
    mean: np.ndarray
    components: np.ndarray
    scale: float

    def apply(self, X: np.ndarray) -> np.ndarray:
        """(n, D) raw vectors -> (n, k) coordinates."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise EmbeddingError(
                f"{self.name} vectors have shape {X.shape}; the model was fitted on "
                f"{self.mean.shape[0]}-dimensional ones"
            )
        return (X - self.mean) @ self.components.T / self.scale


def fit_projection(X: np.ndarray, name: str, k: int) -> BlockProjection:
    """PCA of the training vectors X (N, D) to k components, scaled as build_embedding's 'block'."""
    res = pca(X, k, where=f"{name} PCA")
    total = float(res.explained_variance.sum())
    return BlockProjection(name, res.mean, res.components, float(np.sqrt(total)) if total > 0 else 1.0)


def blocks_of(projections: Sequence[BlockProjection]) -> tuple[tuple[str, int, int], ...]:
    """The (name, start, stop) column layout of the concatenated blocks."""
    out, off = [], 0
    for p in projections:
        out.append((p.name, off, off + p.components.shape[0]))
        off += p.components.shape[0]
    return tuple(out)


def embed(
    projections: Sequence[BlockProjection], sources: Mapping[str, GeneVectors], genes: Sequence[str]
) -> np.ndarray:
    """Z (n, Q) for ``genes``: every block's source must hold a vector for each gene.

    Raises EmbeddingError naming the source and the genes it lacks.
    """
    parts = []
    for p in projections:
        if p.name not in sources:
            raise EmbeddingError(f"the model needs a {p.name!r} embedding; given: {sorted(sources)}")
        vec = sources[p.name]
        have = set(vec.names)
        missing = [g for g in genes if g not in have]
        if missing:
            raise EmbeddingError(f"{vec.source}: no {p.name} vector for {len(missing)} gene(s) {preview(missing)}")
        parts.append(p.apply(vec.subset(list(genes)).X))
    return np.hstack(parts)


# ------------------------------------------------------------------ fitted model
@dataclass(frozen=True, eq=False)
class FittedModel(PicklesThroughInit):
    """Everything needed to rebuild a trained model's state.

    spec: the model (:class:`~gpllm.models.registry.ModelSpec`); seed: its seed.
    perts: (N,) training perturbations, genes: (G,) measured genes. Z (N, Q),
    Y (N, G), ctrl (G,): training arrays. projections: the embedding map.
    record: the model's record of its fit (``{}`` for models without one).
    provenance: JSON-serialisable record (screen, embedding files, k).
    """

    spec: ModelSpec
    seed: int
    perts: tuple[str, ...]
    genes: tuple[str, ...]
    Z: np.ndarray
    Y: np.ndarray
    ctrl: np.ndarray
    projections: tuple[BlockProjection, ...]
    record: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", spec_from(self.spec, "fitted model"))
        for name in ("record", "provenance"):
            object.__setattr__(self, name, MappingProxyType(json.loads(json.dumps(dict(getattr(self, name))))))

    @property
    def model(self) -> str:
        """The model's name, as in result tables."""
        return self.spec.name

    @property
    def blocks(self) -> tuple[tuple[str, int, int], ...]:
        return blocks_of(self.projections)

    @property
    def embedding(self) -> str:
        """The embedding's name as the sweep writes it: 'text', 'sequence', 'text+sequence'."""
        return "+".join(p.name for p in self.projections)

    def build(self) -> Model:
        """The model this was fitted as."""
        return self.spec.build(BuildContext(blocks=self.blocks, ctrl=self.ctrl, seed=self.seed))


def train(
    model: str | ModelSpec,
    screen: PerturbationData,
    sources: Mapping[str, GeneVectors],
    perts: Sequence[str] | None = None,
    *,
    k: int = 50,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
) -> FittedModel:
    """Fit ``model`` (a built-in name, a ``module:attr`` reference or a spec) on ``perts``
    of ``screen`` (default: all) embedded by ``sources``.

    Perturbations lacking a vector in any source are left out (counted in the
    provenance, as build_embedding's missing='drop'); unknown ones raise
    DataError naming them. Each source is PCA-reduced to k components on the
    kept training perturbations.
    """
    spec = spec_from(model, "model")
    spec.check()  # a bad reference fails before any PCA or fit
    perts = list(screen.perts if perts is None else perts)
    check_unique(perts, "perturbation names", "training list")
    screen.index(perts)  # names any perturbation the screen lacks
    kept, aligned, _ = align(sources, perts, "drop")
    if len(kept) < 2:
        raise EmbeddingError(f"only {len(kept)} training perturbation(s) have every embedding; at least 2 needed")
    projections = tuple(fit_projection(X, name, k) for name, X in aligned.items())
    Z = np.hstack([p.apply(aligned[p.name]) for p in projections])
    Y = screen.Y[screen.index(kept)]
    built = spec.build(BuildContext(blocks=blocks_of(projections), ctrl=screen.ctrl, seed=seed))
    state = built.fit(Z, Y)
    prov = {
        **dict(provenance or {}),
        "k": int(k),
        "n_train": len(kept),
        "n_dropped_no_embedding": len(perts) - len(kept),
    }
    return FittedModel(
        spec, seed, tuple(kept), screen.genes, Z, Y, screen.ctrl, projections, record_of(built, state), prov
    )


def restore(fitted: FittedModel) -> tuple[Model, Any]:
    """(model, state) as :func:`train` had them, through the model's ``restore`` hook
    (a GP is reconditioned on its recorded hyperparameters, no re-optimisation;
    deterministic models are refitted on the stored arrays)."""
    model = fitted.build()
    try:
        return model, restore_state(model, fitted.record, fitted.Z, fitted.Y)
    except InputError as err:
        raise CorruptFileError(f"fitted {fitted.model}: {err}") from err


def predict(fitted: FittedModel, sources: Mapping[str, GeneVectors], genes: Sequence[str]) -> Prediction:
    """Predicted profiles for perturbing each of ``genes``: mean (M, G), var (M,), (M, G) or None.

    NonFiniteError naming the model and counting the values if the model predicts NaN or inf
    (as the sweep refuses them), so that no such prediction is ever written."""
    genes = list(genes)
    if not genes:
        raise InputError("no genes to predict for")
    check_unique(genes, "gene names", "genes to predict")
    Z = embed(fitted.projections, sources, genes)
    model, state = restore(fitted)
    pred = model.predict(state, Z)
    mean, var = np.asarray(pred.mean), None if pred.var is None else np.asarray(pred.var)
    for what, values in (("mean", mean), ("variance", var)):
        if values is None:
            continue
        bad = int(np.size(values) - np.isfinite(values).sum())
        if bad:
            rows = np.flatnonzero(~np.isfinite(values.reshape(len(genes), -1)).all(axis=1))
            raise NonFiniteError(
                f"model {fitted.model!r} predicted {bad} NaN/inf {what} value(s) of {values.size}, for "
                f"{rows.size} of the {len(genes)} genes (e.g. {preview([genes[i] for i in rows])})"
            )
    return Prediction(mean, var)


# ------------------------------------------------------------------ file
def save(fitted: FittedModel, path: str | Path) -> Path:
    """Write ``fitted`` as one .npz (layout in the module docstring), atomically."""
    path = Path(path)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": fitted.spec.to_json(),
        "seed": fitted.seed,
        "perts": list(fitted.perts),
        "genes": list(fitted.genes),
        "blocks": [p.name for p in fitted.projections],
        "record": dict(fitted.record),
        "provenance": dict(fitted.provenance),
    }
    # np.savez's keyword arrays: any array-like (Any, or its stub matches them against allow_pickle)
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta)), "Z": fitted.Z, "Y": fitted.Y, "ctrl": fitted.ctrl}
    for i, p in enumerate(fitted.projections):
        arrays.update(
            {f"proj{i}_mean": p.mean, f"proj{i}_components": p.components, f"proj{i}_scale": np.float64(p.scale)}
        )
    return write_bytes_from(path, lambda f: np.savez(f, **arrays))


def load(path: str | Path) -> FittedModel:
    """Read a file written by :func:`save`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such fitted-model file")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays["meta"]))
    except Exception as err:  # zipfile, JSON and missing-key errors alike mean "not our file"
        raise CorruptFileError(f"{path}: not a gpllm fitted-model file ({type(err).__name__}: {err})") from err
    if meta.get("format") != FORMAT:
        raise CorruptFileError(f"{path}: not a gpllm fitted-model file (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise DataError(f"{path}: fitted-model format version {meta.get('version')}, this gpllm reads {VERSION}")
    try:
        projections = tuple(
            BlockProjection(
                name, arrays[f"proj{i}_mean"], arrays[f"proj{i}_components"], float(arrays[f"proj{i}_scale"])
            )
            for i, name in enumerate(meta["blocks"])
        )
        return FittedModel(
            meta["model"],
            int(meta["seed"]),
            tuple(meta["perts"]),
            tuple(meta["genes"]),
            arrays["Z"],
            arrays["Y"],
            arrays["ctrl"],
            projections,
            meta["record"],
            meta["provenance"],
        )
    except KeyError as err:
        raise CorruptFileError(f"{path}: fitted-model file lacks {err}") from err
    except InputError as err:  # a spec that no longer resolves (a moved plug-in file)
        raise DataError(f"{path}: {err}") from err


# ------------------------------------------------------------------ predictions file
VARIANCE_LAYER = "variance"
UNS_KEY = "gpllm_prediction"


def to_anndata(fitted: FittedModel, perts: Sequence[str], prediction: Prediction):
    """Predictions as AnnData: obs = the M predicted perturbations, var = the G genes.

    X (M, G) is the predicted mean profile; layers['variance'] (M, G) holds the
    predictive variance per gene (a GP's one value per perturbation repeated
    over genes) when the model has one. uns['gpllm_prediction'] records
    the model, embedding, training size and hyperparameters (as JSON).
    """
    import anndata as ad
    import pandas as pd

    mean = np.asarray(prediction.mean, dtype=np.float64)
    obs = pd.DataFrame(index=pd.Index(list(perts), name="perturbation"))
    var = pd.DataFrame(index=pd.Index(list(fitted.genes), name="gene"))
    adata = ad.AnnData(X=mean, obs=obs, var=var)
    if prediction.var is not None:
        adata.layers[VARIANCE_LAYER] = np.array(variance_per_gene(prediction), np.float64)
    adata.uns[UNS_KEY] = {
        "model": fitted.model,
        "embedding": fitted.embedding,
        "n_train": len(fitted.perts),
        "provenance_json": json.dumps({**dict(fitted.provenance), "hyperparameters": dict(fitted.record)}),
    }
    return adata

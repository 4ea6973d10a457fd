"""A model fitted on one screen, saved without pickle and restored exactly.

``gpllm fit`` trains once; ``gpllm predict`` later predicts for gene symbols
the screen never perturbed. Two things must survive between the commands:

* the embedding map. Each source's PCA is fitted on the *training*
  perturbations' raw vectors (as :func:`gpllm.data.embeddings.build_embedding`
  does, block-scaled) and kept as (mean, components, scale), so a new gene's
  raw vector x maps to ``z = (x - mean) @ components.T / scale``, the same
  coordinates the model was trained in;
* the model. Its state holds JAX pytrees (a Cholesky factor, a PRNG key), so
  instead of pickling it the file keeps the training arrays and, for a GP, the
  optimised hyperparameters (unconstrained leaves, float64, bit-exact); loading
  rebuilds the state by reconditioning the GP on them, or by refitting the
  cheap models (kNN, ridge, baselines), which are deterministic.

File layout: one ``.npz`` (read with ``allow_pickle=False``) holding ``meta``
(a JSON string: format, model, seed, perturbation and gene names, the block
layout, provenance) and the arrays ``Z`` (N, Q), ``Y`` (N, G), ``ctrl`` (G,),
``proj{i}_mean`` (D_i,), ``proj{i}_components`` (k_i, D_i), ``proj{i}_scale``
() per block i, and ``gp{j}`` for the GP's j-th hyperparameter leaf.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jax
import numpy as np

from gpllm.data.embeddings import align, pca
from gpllm.data.screen import PerturbationData
from gpllm.data.validate import check_unique, preview
from gpllm.data.vectors import GeneVectors
from gpllm.errors import CorruptFileError, DataError, EmbeddingError, InputError, MissingFileError
from gpllm.models.base import Model, Prediction
from gpllm.models.gp import GPModel, GPState
from gpllm.models.registry import build_model
from gpllm.readonly import PicklesThroughInit

FORMAT = "gpllm-fitted-model"
VERSION = 1


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


def embed(projections: Sequence[BlockProjection], sources: Mapping[str, GeneVectors], genes: Sequence[str]) -> np.ndarray:
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

    model: registry name; seed: its seed. perts: (N,) training perturbations,
    genes: (G,) measured genes. Z (N, Q), Y (N, G), ctrl (G,): training arrays.
    projections: the embedding map. gp_leaves: the GP's optimised
    hyperparameters as unconstrained leaves (empty for other models).
    provenance: JSON-serialisable record (screen, embedding files, k, fit summary).
    """

    model: str
    seed: int
    perts: tuple[str, ...]
    genes: tuple[str, ...]
    Z: np.ndarray
    Y: np.ndarray
    ctrl: np.ndarray
    projections: tuple[BlockProjection, ...]
    gp_leaves: tuple[np.ndarray, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "provenance", MappingProxyType(json.loads(json.dumps(dict(self.provenance)))))

    @property
    def blocks(self) -> tuple[tuple[str, int, int], ...]:
        return blocks_of(self.projections)

    @property
    def embedding(self) -> str:
        """The embedding's name as the sweep writes it: 'text', 'sequence', 'text+sequence'."""
        return "+".join(p.name for p in self.projections)

    def build(self) -> Model:
        """The registry model this was fitted as."""
        return build_model(self.model, blocks=self.blocks, ctrl=self.ctrl, seed=self.seed)


def train(
    model: str,
    screen: PerturbationData,
    sources: Mapping[str, GeneVectors],
    perts: Sequence[str] | None = None,
    *,
    k: int = 50,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
) -> FittedModel:
    """Fit ``model`` on ``perts`` of ``screen`` (default: all) embedded by ``sources``.

    Perturbations lacking a vector in any source are left out (counted in the
    provenance, as build_embedding's missing='drop'); unknown ones raise
    DataError naming them. Each source is PCA-reduced to k components on the
    kept training perturbations.
    """
    perts = list(screen.perts if perts is None else perts)
    check_unique(perts, "perturbation names", "training list")
    screen.index(perts)  # names any perturbation the screen lacks
    kept, aligned, _ = align(sources, perts, "drop")
    if len(kept) < 2:
        raise EmbeddingError(f"only {len(kept)} training perturbation(s) have every embedding; at least 2 needed")
    projections = tuple(fit_projection(X, name, k) for name, X in aligned.items())
    Z = np.hstack([p.apply(aligned[p.name]) for p in projections])
    Y = screen.Y[screen.index(kept)]
    built = build_model(model, blocks=blocks_of(projections), ctrl=screen.ctrl, seed=seed)
    state = built.fit(Z, Y)
    leaves = tuple(np.asarray(x) for x in jax.tree.leaves(state.fit.params)) if isinstance(state, GPState) else ()
    prov = {
        **dict(provenance or {}),
        "k": int(k),
        "n_train": len(kept),
        "n_dropped_no_embedding": len(perts) - len(kept),
        "hyperparameters": hyperparameters(state),
    }
    return FittedModel(model, seed, tuple(kept), screen.genes, Z, Y, screen.ctrl, projections, leaves, prov)


def hyperparameters(state: Any) -> dict[str, Any]:
    """What a fitted state chose, JSON-ready: a GP's positive kernel and noise values
    (and LML), else the state's numeric scalars (kNN's k, ridge's lam)."""
    from gpllm import gp

    if isinstance(state, GPState):
        values = jax.tree.map(lambda x: np.asarray(x).tolist(), gp.params_to_values(state.fit.params))
        return {**values, "lml": float(state.fit.lml), "converged": bool(state.fit.converged)}
    return {
        name: np.asarray(x).item()
        for name, x in state._asdict().items()
        if hasattr(x, "dtype") and jax.numpy.issubdtype(x.dtype, np.number) and np.ndim(x) == 0
    }


def restore(fitted: FittedModel) -> tuple[Model, Any]:
    """(model, state) as :func:`train` had them.

    A GP is reconditioned on the stored hyperparameters (no re-optimisation);
    other models are refitted on the stored arrays.
    """
    from gpllm import gp

    model = fitted.build()
    if not isinstance(model, GPModel):
        return model, model.fit(fitted.Z, fitted.Y)
    treedef = jax.tree.structure(gp.init_params(model.kernel, fitted.Z, fitted.Y))
    if treedef.num_leaves != len(fitted.gp_leaves):
        raise CorruptFileError(
            f"fitted {fitted.model}: {len(fitted.gp_leaves)} hyperparameter arrays stored, the kernel has {treedef.num_leaves}"
        )
    params = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in fitted.gp_leaves])
    return model, model.condition(params, fitted.Z, fitted.Y)


def predict(fitted: FittedModel, sources: Mapping[str, GeneVectors], genes: Sequence[str]) -> Prediction:
    """Predicted profiles for perturbing each of ``genes``: mean (M, G), var (M,) or None."""
    genes = list(genes)
    if not genes:
        raise InputError("no genes to predict for")
    check_unique(genes, "gene names", "genes to predict")
    Z = embed(fitted.projections, sources, genes)
    model, state = restore(fitted)
    pred = model.predict(state, Z)
    return Prediction(np.asarray(pred.mean), None if pred.var is None else np.asarray(pred.var))


# ------------------------------------------------------------------ file
def save(fitted: FittedModel, path: str | Path) -> Path:
    """Write ``fitted`` as one .npz (layout in the module docstring), atomically."""
    path = Path(path)
    meta = {
        "format": FORMAT, "version": VERSION, "model": fitted.model, "seed": fitted.seed,
        "perts": list(fitted.perts), "genes": list(fitted.genes),
        "blocks": [p.name for p in fitted.projections], "n_gp_leaves": len(fitted.gp_leaves),
        "provenance": dict(fitted.provenance),
    }  # fmt: skip
    arrays = {"meta": np.array(json.dumps(meta)), "Z": fitted.Z, "Y": fitted.Y, "ctrl": fitted.ctrl}
    for i, p in enumerate(fitted.projections):
        arrays.update({f"proj{i}_mean": p.mean, f"proj{i}_components": p.components, f"proj{i}_scale": np.float64(p.scale)})
    arrays.update({f"gp{j}": leaf for j, leaf in enumerate(fitted.gp_leaves)})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # a file object: np.savez would append '.npz' to a name
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
            BlockProjection(name, arrays[f"proj{i}_mean"], arrays[f"proj{i}_components"], float(arrays[f"proj{i}_scale"]))
            for i, name in enumerate(meta["blocks"])
        )
        leaves = tuple(arrays[f"gp{j}"] for j in range(meta["n_gp_leaves"]))
        return FittedModel(
            meta["model"], int(meta["seed"]), tuple(meta["perts"]), tuple(meta["genes"]),
            arrays["Z"], arrays["Y"], arrays["ctrl"], projections, leaves, meta["provenance"],
        )  # fmt: skip
    except KeyError as err:
        raise CorruptFileError(f"{path}: fitted-model file lacks {err}") from err


# ------------------------------------------------------------------ predictions file
VARIANCE_LAYER = "variance"
UNS_KEY = "gpllm_prediction"


def to_anndata(fitted: FittedModel, perts: Sequence[str], prediction: Prediction):
    """Predictions as AnnData: obs = the M predicted perturbations, var = the G genes.

    X (M, G) is the predicted mean profile; layers['variance'] (M, G) holds the
    predictive variance (one value per perturbation, repeated over genes, as
    the GP shares it) when the model has one. uns['gpllm_prediction'] records
    the model, embedding, training size and hyperparameters (as JSON).
    """
    import anndata as ad
    import pandas as pd

    mean = np.asarray(prediction.mean, dtype=np.float64)
    obs = pd.DataFrame(index=pd.Index(list(perts), name="perturbation"))
    var = pd.DataFrame(index=pd.Index(list(fitted.genes), name="gene"))
    adata = ad.AnnData(X=mean, obs=obs, var=var)
    if prediction.var is not None:
        adata.layers[VARIANCE_LAYER] = np.repeat(np.asarray(prediction.var, np.float64)[:, None], mean.shape[1], axis=1)
    adata.uns[UNS_KEY] = {
        "model": fitted.model,
        "embedding": fitted.embedding,
        "n_train": len(fitted.perts),
        "provenance_json": json.dumps(dict(fitted.provenance)),
    }
    return adata

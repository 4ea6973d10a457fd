"""The evaluation grid: screens x embeddings x models x training sizes x folds.

For every screen the perturbations that have every embedding are split once
(5-fold CV, nested downsampling of each training fold; the same plan for all
models, so their rows pair up). A *chunk* is one (screen, embedding, model,
size) cell over all folds: GP fits of a chunk share one training size and run
as one vmapped, compiled fit. Each chunk's rows (one per test perturbation
and fold) are written atomically to the run folder as soon as it finishes, so
a killed sweep restarts where it stopped and ends with the same table.
The chunks of one (screen, embedding, model) form a *chain* over the sizes;
chains are independent, so ``workers`` > 1 spreads them over processes
(:mod:`gpllm.evaluate.workers`).

Row columns: screen, model, embedding, size, fold, pert, pearson_de,
pearson_all, mae_de, mae_all, pearson_de_meanref, undefined_de,
undefined_all, effect_size, hyperparameters (the model's record of what the
fold's fit chose, as JSON, on the fold's first row; "" on its other rows and
for models that record nothing), and the calibration of the predictive
distribution (:func:`~gpllm.evaluate.metrics.predictive_scores`, NaN for a
model without a variance):

- nll, crps, coverage10 ... coverage90, coverage95 (the central intervals of
  :data:`~gpllm.evaluate.metrics.COVERAGE_LEVELS`), over all genes;
- nll_de, crps_de, coverage50_de, coverage90_de over the top-20 DE genes;
- var_scale: s = mean(r^2 / v) over the model's leave-one-out predictions on
  the training fold (its ``heldout`` hook; NaN where it has none), and every
  column above again, suffixed ``_recal``, with the variance s v. The test
  fold never enters s.

Baselines do not use an embedding and run once per screen as embedding "none".

The sweep knows models only through the protocol of
:mod:`gpllm.models.base`: it asks a model to fit and predict a chunk's
folds (``fit_predict_folds``), hands each fold the record it stored at the
next smaller training size as a warm start (read back from that size's part,
so a resumed run starts from exactly the same values as an uninterrupted
one), and pads inputs with zero columns for models that declare
``zero_padding_invariant``. What a model does with a warm start is its own
business (the GP's is in :mod:`gpllm.models.gp`). By default the sweep's GP
fits run in float32, which halves their cost on CPU and moves the metrics by
far less than their standard errors; ``gp_dtype="float64"`` restores the
core's default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
import warnings
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import numpy as np
import polars as pl

from gpllm.data.embeddings.assemble import Embedding
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.errors import DataError, InputError, WorkerError
from gpllm.evaluate.metrics import COVERAGE_LEVELS, perturbation_metrics, predictive_scores, variance_scale
from gpllm.evaluate.splits import DEFAULT_SIZES, Split, make_plan
from gpllm.evaluate.store import RunStore, write_json
from gpllm.evaluate.executors import Executor, LocalExecutor
from gpllm.models.base import Fold, FoldFit, fit_predict_folds, zero_padding_invariant
from gpllm.models.registry import BuildContext, ModelSpec, spec_from
from gpllm.progress import run_bar

log = logging.getLogger(__name__)

DEFAULT_MODELS = ("gp", "knn_k1", "knn_ktuned", "ridge", "random_perturbation", "nonctrl_mean")
NO_EMBEDDING = "none"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """What to run: models, embeddings (names of the given Embeddings), sizes, folds, seed.

    models: built-in names, ``module:attr`` references to a user's kernel or
    model, or :class:`~gpllm.models.registry.ModelSpec` objects (a config's
    ``[models.NAME]`` tables); stored as specs.
    """

    models: tuple[Any, ...] = DEFAULT_MODELS
    embeddings: tuple[str, ...] = ("text", "sequence", "text+sequence")
    sizes: tuple[int, ...] = DEFAULT_SIZES
    n_folds: int | Literal["loo"] = 5
    seed: int = 0
    gp_dtype: Literal["float32", "float64"] = "float32"
    warm_start: bool = True

    def __post_init__(self):
        specs = tuple(spec_from(m, f"models[{i}]") for i, m in enumerate(self.models))
        names = [s.name for s in specs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InputError(f"models: {duplicated} named more than once")
        if not specs:
            raise InputError("models is empty: name at least one model")
        object.__setattr__(self, "models", specs)
        if self.gp_dtype not in ("float32", "float64"):
            raise InputError(f"gp_dtype must be 'float32' or 'float64', got {self.gp_dtype!r}")
        if not self.embeddings and any(not s.baseline for s in specs):
            raise InputError("models that use embeddings need at least one embedding")
        for spec in specs:
            unknown = sorted(set(spec.embeddings) - set(self.embeddings))
            if unknown:
                raise InputError(f"model {spec.name!r} asks for embedding(s) {unknown} the run does not build; "
                                 f"embeddings: {list(self.embeddings)}")  # fmt: skip

    def spec(self, name: str) -> ModelSpec:
        return next(s for s in self.models if s.name == name)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "models": [s.to_json() for s in self.models]}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One cell of the grid, computed over all folds at once."""

    screen: str
    embedding: str
    model: str
    size: int

    @property
    def key(self) -> str:
        return f"{self.screen}|{self.embedding}|{self.model}|{self.size}"


def common_perturbations(
    screens: Mapping[str, PerturbationData], embeddings: Mapping[str, Embedding]
) -> tuple[str, ...]:
    """Perturbations present in every screen and every embedding, in the first screen's order.

    Logs how many each source loses; DataError if nothing is left.
    """
    sources = {f"screen {k}": v.perts for k, v in screens.items()}
    sources.update({f"embedding {k}": v.names for k, v in embeddings.items()})
    keep = set.intersection(*(set(v) for v in sources.values()))
    for name, perts in sources.items():
        if len(perts) > len(keep):
            log.warning("%s: %d of %d perturbations are not shared by all inputs and are left out",
                        name, len(perts) - len(keep), len(perts))  # fmt: skip
    first = next(iter(screens.values())).perts
    common = tuple(p for p in first if p in keep)
    if not common:
        raise DataError(f"no perturbation is shared by all of: {', '.join(sources)}")
    return common


def plan_chunks(config: SweepConfig, screens: Sequence[str], sizes: Sequence[int]) -> list[Chunk]:
    """All chunks in a fixed order: per screen, baselines first, then each embedding's models
    (a model that names its embeddings runs on those only)."""
    chunks = []
    for screen in screens:
        for size in sizes:
            chunks += [Chunk(screen, NO_EMBEDDING, m.name, size) for m in config.models if m.baseline]
            for emb in config.embeddings:
                chunks += [Chunk(screen, emb, m.name, size) for m in config.models
                           if not m.baseline and (not m.embeddings or emb in m.embeddings)]  # fmt: skip
    return chunks


def _effect_size(delta: np.ndarray, de: np.ndarray) -> np.ndarray:
    """|x - ctrl| over each perturbation's top-20 DE genes (L2 norm), (M,)."""
    return np.linalg.norm(np.take_along_axis(delta, de, axis=1), axis=1)


#: The levels whose coverage is also scored over the top-20 DE genes.
DE_COVERAGE_LEVELS = (0.5, 0.9)
#: Suffix of the recalibrated columns; VAR_SCALE: the column of the factor applied.
RECAL = "_recal"
VAR_SCALE = "var_scale"


def coverage_column(level: float, de: bool = False) -> str:
    """``coverage90`` for the 90% interval over all genes, ``coverage90_de`` over the DE genes."""
    return f"coverage{round(100 * level)}" + ("_de" if de else "")


#: The calibration columns, in the order :func:`calibration_columns` fills them.
CALIBRATION_COLUMNS: tuple[str, ...] = (
    "nll", "crps", *map(coverage_column, COVERAGE_LEVELS),
    "nll_de", "crps_de", *(coverage_column(level, de=True) for level in DE_COVERAGE_LEVELS),
)  # fmt: skip


def calibration_columns(Y_true: np.ndarray, mean: np.ndarray, var, de: np.ndarray, suffix: str = "") -> dict:
    """The :data:`CALIBRATION_COLUMNS` (each name + ``suffix``) for one fold's M test rows;
    NaN everywhere when ``var`` is None."""
    if var is None:
        return {name + suffix: np.full(len(Y_true), np.nan) for name in CALIBRATION_COLUMNS}
    every = predictive_scores(Y_true, mean, var)
    top = predictive_scores(Y_true, mean, var, levels=DE_COVERAGE_LEVELS, genes=de)
    values = [every.nll, every.crps, *np.asarray(every.coverage).T, top.nll, top.crps, *np.asarray(top.coverage).T]
    return {name + suffix: np.asarray(v) for name, v in zip(CALIBRATION_COLUMNS, values, strict=True)}


def _fold_rows(chunk: Chunk, data: PerturbationData, split: Split, fit: FoldFit) -> dict:
    prediction = fit.prediction
    Y_true = data.Y[split.test]
    de = data.de[split.test]
    mean = np.asarray(prediction.mean)
    ctrl_ref = perturbation_metrics(Y_true, mean, reference=data.ctrl, de=de)
    mean_ref = perturbation_metrics(Y_true, mean, reference=data.Y[split.train].mean(axis=0), de=de)
    n = len(split.test)
    var = None if prediction.var is None else np.asarray(prediction.var)
    scale = np.nan
    if var is not None and fit.heldout is not None:
        scale = variance_scale(fit.heldout.residual, fit.heldout.var)
        if not scale > 0:  # every held-out residual exactly 0: no scale to apply
            scale = np.nan
    return {
        "screen": [chunk.screen] * n, "model": [chunk.model] * n, "embedding": [chunk.embedding] * n,
        "size": np.full(n, chunk.size), "fold": np.full(n, split.fold),
        "pert": [data.perts[i] for i in split.test],
        "pearson_de": np.asarray(ctrl_ref.pearson_de), "pearson_all": np.asarray(ctrl_ref.pearson_all),
        "mae_de": np.asarray(ctrl_ref.mae_de), "mae_all": np.asarray(ctrl_ref.mae_all),
        "pearson_de_meanref": np.asarray(mean_ref.pearson_de),
        "undefined_de": np.asarray(ctrl_ref.undefined_de), "undefined_all": np.asarray(ctrl_ref.undefined_all),
        "effect_size": _effect_size(Y_true - data.ctrl, de),
        # The record once per fold: a user kernel's may hold a whole projection matrix.
        "hyperparameters": [json.dumps(dict(fit.record), sort_keys=True) if fit.record else ""] + [""] * (n - 1),
        **calibration_columns(Y_true, mean, var, de),
        VAR_SCALE: np.full(n, scale),
        **calibration_columns(Y_true, mean, None if np.isnan(scale) else scale * var, de, RECAL),
    }  # fmt: skip


def _pad_columns(Z: np.ndarray, width: int) -> np.ndarray:
    return Z if Z.shape[1] >= width else np.pad(Z, ((0, 0), (0, width - Z.shape[1])))


def records_by_fold(frame: pl.DataFrame | None) -> dict[int, dict]:
    """Each fold's record (the ``hyperparameters`` JSON on its first row) in a part's rows."""
    if frame is None or frame.height == 0:
        return {}
    first = frame.group_by("fold", maintain_order=True).agg(pl.col("hyperparameters").first())
    return {fold: json.loads(text) for fold, text in zip(first["fold"].to_list(), first["hyperparameters"].to_list()) if text}


def run_chunk(
    chunk: Chunk,
    data: PerturbationData,
    embedding: Embedding | None,
    splits: Sequence[Split],
    seed: int,
    *,
    spec: ModelSpec | None = None,
    gp_dtype: str | None = None,
    previous: pl.DataFrame | None = None,
    pad_width: int = 0,
) -> pl.DataFrame:
    """Fit and score one chunk over all its folds; rows as in the module docstring.

    ``spec``: the model (default: the built-in named ``chunk.model``).
    ``previous``: this (screen, embedding, model)'s rows at a smaller size,
    whose records warm-start the fits. ``pad_width``: inputs of models that
    declare ``zero_padding_invariant`` are padded with zero columns to this
    width (the widest embedding the model runs on), so that all its fits at
    one size share one compiled program.
    """
    spec = spec or ModelSpec(chunk.model)
    blocks = embedding.blocks if embedding is not None else ()
    model = spec.build(BuildContext(blocks=blocks, ctrl=data.ctrl, seed=seed, gp_dtype=gp_dtype))
    # Baselines only look at Z's width, so a one-column placeholder serves them.
    Z = embedding.Z if embedding is not None else np.zeros((data.n_perts, 1))
    if zero_padding_invariant(model):
        Z = _pad_columns(Z, pad_width)
    folds = [Fold(Z[s.train], data.Y[s.train], Z[s.test]) for s in splits]
    records = records_by_fold(previous)
    starts = [records.get(s.fold) for s in splits] if records else None
    fits = fit_predict_folds(model, folds, starts)
    rows = [_fold_rows(chunk, data, s, fit) for s, fit in zip(splits, fits)]
    frame = pl.concat([pl.DataFrame(r) for r in rows], how="vertical")
    return frame.with_columns(pl.col("size").cast(pl.Int64), pl.col("fold").cast(pl.Int64))


@dataclasses.dataclass(frozen=True)
class SweepContext:
    """Everything a chunk needs, aligned to the shared perturbations; picklable for workers."""

    screens: Mapping[str, PerturbationData]
    embeddings: Mapping[str, Embedding]
    splits_by_size: Mapping[int, tuple[Split, ...]]  # in increasing size
    config: SweepConfig
    root: str  # the run folder
    run_id: str  # the run's id: a part is written only while the folder holds this run
    pad_widths: Mapping[str, int]  # per model: the widest embedding it runs on (see run_chunk)


def compute_chunk(chunk: Chunk, context: SweepContext) -> None:
    """Run one chunk (warm-started from its stored smaller size) and store its rows."""
    started = time.perf_counter()
    store = RunStore(context.root, context.run_id)
    emb = None if chunk.embedding == NO_EMBEDDING else context.embeddings[chunk.embedding]
    spec = context.config.spec(chunk.model)
    previous = _previous_part(store, chunk, spec, tuple(context.splits_by_size), context.config.warm_start)
    frame = run_chunk(
        chunk, context.screens[chunk.screen], emb, context.splits_by_size[chunk.size], context.config.seed,
        spec=spec, gp_dtype=context.config.gp_dtype, previous=previous, pad_width=context.pad_widths[chunk.model],
    )  # fmt: skip
    store.write_part(chunk.key, frame)
    store.record_time(chunk.key, time.perf_counter() - started)


#: Rough relative cost of a built-in model's chunks, to hand out the longest chains
#: first; a user's model counts as a GP (the costly end, so it starts early).
_CHAIN_COST = {"knn_ktuned": 2, "ridge": 2, "linear": 2, "knn_k1": 1, "random_perturbation": 0.5,
               "nonctrl_mean": 0.5, "control": 0.5}  # fmt: skip
_DEFAULT_CHAIN_COST = 8


def plan_chains(chunks: Sequence[Chunk]) -> list[list[Chunk]]:
    """Chunks grouped by (screen, embedding, model), each chain in size order (a fit
    warm-starts from the smaller size), the costliest chains first."""
    chains: dict[tuple[str, str, str], list[Chunk]] = {}
    for chunk in chunks:
        chains.setdefault((chunk.screen, chunk.embedding, chunk.model), []).append(chunk)
    ordered = [sorted(chain, key=lambda c: c.size) for chain in chains.values()]
    cost = lambda chain: _CHAIN_COST.get(chain[0].model, _DEFAULT_CHAIN_COST) * sum(c.size for c in chain)
    return sorted(ordered, key=lambda chain: -cost(chain))


def run_sweep(
    screens: Mapping[str, PerturbationData],
    embeddings: Mapping[str, Embedding],
    config: SweepConfig,
    store: RunStore,
    *,
    data_id: str = "",
    progress: bool = True,
    workers: int | None = 1,
    executor: Executor | None = None,
) -> pl.DataFrame:
    """Run (or resume) the grid into ``store``; returns the full results table.

    ``data_id`` names the data in the run manifest (e.g. the synthetic seed or
    the input files) so that a folder is never resumed with other data.
    ``workers``: processes to spread the chains over (:mod:`gpllm.evaluate.workers`);
    1 runs in this process, None picks :func:`~gpllm.evaluate.workers.default_workers`.
    ``executor``: where the chains run instead (:mod:`gpllm.evaluate.executors`, e.g. a
    Dask cluster); ``workers`` is then unused.
    """
    missing = [e for e in config.embeddings if e not in embeddings]
    if missing:
        raise InputError(f"config asks for embedding(s) {missing} but only {sorted(embeddings)} were given")
    for spec in config.models:  # a user's reference that does not resolve fails before any fit
        spec.check()
    used = {e: embeddings[e] for e in config.embeddings}
    perts = common_perturbations(screens, used)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a clipped size is reported below, with its reason
        plan = make_plan(perts, n_folds=config.n_folds, sizes=config.sizes, seed=config.seed)
    run = {"config": config.to_json(), "data": data_id, "perts": list(perts), "sizes_run": list(plan.sizes),
           "code": {f: sha for spec in config.models for f, sha in spec.code().items()}}  # fmt: skip
    if note := _size_note(config, plan.sizes, len(perts)):
        log.warning("%s", note)
        run["size_note"] = note
    resumed = store.open(run)
    try:
        if resumed:
            log.info("resuming the run in %s", store.root)
        write_json(store.root / "splits.json", plan.to_dict())
        aligned_emb = {name: e.select(perts) for name, e in used.items()}
        context = SweepContext(
            screens={name: s.select(perts) for name, s in screens.items()},
            embeddings=aligned_emb,
            splits_by_size={size: tuple(s for s in plan.splits if s.size == size) for size in plan.sizes},
            config=config,
            root=str(store.root.resolve()),  # the same path for workers with another cwd
            run_id=store.run_id,
            pad_widths={s.name: max((aligned_emb[e].Z.shape[1] for e in s.embeddings or config.embeddings),
                                    default=0) for s in config.models},
        )  # fmt: skip
        chunks = plan_chunks(config, list(screens), plan.sizes)
        executor = executor or LocalExecutor(workers)
        # Twice at most: a part found damaged when the first pass ends is recomputed once.
        for _ in range(2):
            todo = [c for c in chunks if not store.has_part(c.key)]
            if not todo:
                break
            with _progress(progress, len(chunks), len(chunks) - len(todo), executor.label) as on_event:
                try:
                    executor.run_chains(plan_chains(todo), compute_chunk, context, on_event)
                except WorkerError as err:
                    raise store.log_error(err) from None
        return store.write_results([c.key for c in chunks])
    finally:
        store.release()


def _size_note(config: SweepConfig, sizes_run: Sequence[int], n_perts: int) -> str:
    """Why a requested training size was not run as asked ("" if every one was)."""
    clipped = sorted(set(config.sizes) - set(sizes_run))
    if not clipped:
        return ""
    folds = n_perts if config.n_folds == "loo" else config.n_folds
    return (f"training size(s) {clipped} cannot be run: {n_perts} perturbations are shared by every "
            f"screen and embedding, so each of the {folds} folds trains on at most {max(sizes_run)}; "
            f"ran sizes {list(sizes_run)} (recorded in run.json)")  # fmt: skip


def _previous_part(
    store: RunStore, chunk: Chunk, spec: ModelSpec, sizes: Sequence[int], enabled: bool
) -> pl.DataFrame | None:
    """The stored rows of the same (screen, embedding, model) at the next smaller size."""
    smaller = [s for s in sizes if s < chunk.size]
    if not enabled or spec.baseline or not smaller:
        return None
    key = dataclasses.replace(chunk, size=max(smaller)).key
    return store.read_part(key) if store.has_part(key) else None


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int, where: str) -> Iterator[Callable[[str, Chunk], None]]:
    """A run bar over chunks (:func:`gpllm.progress.run_bar`), usable as ``with ... as on_event``,
    where ``on_event("start" | "done", chunk)`` is :func:`run_chains`'s callback."""
    suffix = f" ({where})" if where else ""
    with run_bar(f"sweep{suffix}", total, done=done, enabled=enabled) as update:

        def on_event(kind: str, chunk: Chunk) -> None:
            if kind == "done":
                update(advance=1)
            else:
                update(f"{chunk.screen} {chunk.embedding} {chunk.model} n={chunk.size}{suffix}")

        yield on_event

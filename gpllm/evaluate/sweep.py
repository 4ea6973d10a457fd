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
undefined_all, nll, coverage90, effect_size, hyperparameters (the fold's
fitted GP values as JSON, "" for other models). Baselines do not use an
embedding and run once per screen as embedding "none".

GP fits are warm-started from the same fold's optimum at the next smaller
training size (read back from that size's stored part, so a resumed run
starts from exactly the same values as an uninterrupted one); the
optimiser then needs about half the iterations. Below ``fresh_start_below``
(300) a warm-started fit also runs from the fresh start and each fold keeps the
higher final LML: fits on 100 perturbations of the synthetic screens settle
where the kernel carries almost no signal, and the warm start handed that up
the chain (keeping the better start lifted GP top-20 Pearson at 200 and 400 by
up to 0.03 and left 1400 as it was, for ~25 s of a cold default run). By default the sweep's GP
fits run in float32, which halves their cost on CPU and moves the metrics by
far less than their standard errors; ``gp_dtype="float64"`` restores the
core's default.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Literal, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from gpllm import gp
from gpllm.data.embeddings import Embedding
from gpllm.data.screen import PerturbationData
from gpllm.errors import DataError, InputError
from gpllm.gp.fit import FitResult, initial_params
from gpllm.gp.kernels import zero_columns_are_ignored
from gpllm.evaluate.metrics import perturbation_metrics, predictive_scores
from gpllm.evaluate.splits import DEFAULT_SIZES, Split, SplitPlan, make_plan
from gpllm.evaluate.store import RunStore, write_json
from gpllm.evaluate.workers import default_workers, run_chains
from gpllm.models.base import Prediction
from gpllm.models.gp import GPModel
from gpllm.models.knn import KNN
from gpllm.models.registry import BASELINES, build_model, check_model_names

log = logging.getLogger(__name__)

DEFAULT_MODELS = ("gp", "knn_k1", "knn_ktuned", "ridge", "random_perturbation", "nonctrl_mean")
NO_EMBEDDING = "none"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """What to run: models, embeddings (names of the given Embeddings), sizes, folds, seed."""

    models: tuple[str, ...] = DEFAULT_MODELS
    embeddings: tuple[str, ...] = ("text", "sequence", "text+sequence")
    sizes: tuple[int, ...] = DEFAULT_SIZES
    n_folds: int | Literal["loo"] = 5
    seed: int = 0
    gp_dtype: Literal["float32", "float64"] = "float32"
    warm_start: bool = True
    #: Below this training size a warm-started GP fit also runs from the fresh
    #: data-aware start, and each fold keeps whichever ends with the higher LML.
    #: 300 covers the default grid's first warm-started size (200), where fits
    #: on 100 perturbations hand on a start with almost no kernel signal.
    fresh_start_below: int = 300

    def __post_init__(self):
        check_model_names(self.models)
        if self.gp_dtype not in ("float32", "float64"):
            raise InputError(f"gp_dtype must be 'float32' or 'float64', got {self.gp_dtype!r}")
        if not self.embeddings and any(m not in BASELINES for m in self.models):
            raise InputError("models that use embeddings need at least one embedding")


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
    """All chunks in a fixed order: per screen, baselines first, then each embedding's models."""
    chunks = []
    for screen in screens:
        for size in sizes:
            chunks += [Chunk(screen, NO_EMBEDDING, m, size) for m in config.models if m in BASELINES]
            for emb in config.embeddings:
                chunks += [Chunk(screen, emb, m, size) for m in config.models if m not in BASELINES]
    return chunks


def _effect_size(delta: np.ndarray, de: np.ndarray) -> np.ndarray:
    """|x - ctrl| over each perturbation's top-20 DE genes (L2 norm), (M,)."""
    return np.linalg.norm(np.take_along_axis(delta, de, axis=1), axis=1)


def _fold_rows(chunk: Chunk, data: PerturbationData, split: Split, prediction, hyper: str) -> dict:
    Y_true = data.Y[split.test]
    de = data.de[split.test]
    mean = np.asarray(prediction.mean)
    ctrl_ref = perturbation_metrics(Y_true, mean, reference=data.ctrl, de=de)
    mean_ref = perturbation_metrics(Y_true, mean, reference=data.Y[split.train].mean(axis=0), de=de)
    n = len(split.test)
    if prediction.var is not None:
        scores = predictive_scores(Y_true, mean, prediction.var)
        nll, coverage = np.asarray(scores.nll), np.asarray(scores.coverage)
    else:
        nll = coverage = np.full(n, np.nan)
    return {
        "screen": [chunk.screen] * n, "model": [chunk.model] * n, "embedding": [chunk.embedding] * n,
        "size": np.full(n, chunk.size), "fold": np.full(n, split.fold),
        "pert": [data.perts[i] for i in split.test],
        "pearson_de": np.asarray(ctrl_ref.pearson_de), "pearson_all": np.asarray(ctrl_ref.pearson_all),
        "mae_de": np.asarray(ctrl_ref.mae_de), "mae_all": np.asarray(ctrl_ref.mae_all),
        "pearson_de_meanref": np.asarray(mean_ref.pearson_de),
        "undefined_de": np.asarray(ctrl_ref.undefined_de), "undefined_all": np.asarray(ctrl_ref.undefined_all),
        "nll": nll, "coverage90": coverage, "effect_size": _effect_size(Y_true - data.ctrl, de),
        "hyperparameters": [hyper] * n,
    }  # fmt: skip


def encode_hyperparameters(fit: FitResult | None) -> str:
    """A GP fit's positive hyperparameters (and LML, steps) as JSON; "" for other models."""
    if fit is None:
        return ""
    values = jax.tree.map(lambda v: np.asarray(v, np.float64).tolist(), gp.params_to_values(fit.params))
    return json.dumps({**values, "lml": float(fit.lml), "n_steps": int(fit.n_steps)}, sort_keys=True)


def decode_hyperparameters(text: str) -> gp.GPParams:
    """GPParams from :func:`encode_hyperparameters` output."""
    values = json.loads(text)
    kernel = jax.tree.map(np.asarray, values["kernel"])
    return gp.params_from_values(kernel, np.asarray(values["noise"]))


def warm_start(
    model: GPModel, previous: pl.DataFrame | None, Z: np.ndarray, Y: np.ndarray, folds: Sequence[int]
) -> gp.GPParams | None:
    """Per-fold start params (leading axis in ``folds`` order) for Z (B, N, Q), Y (B, N, G).

    A fold starts from its optimum at the smaller size in ``previous`` when that
    is a usable start (:meth:`GPModel.usable_start`), else from the default
    data-aware initialisation. None when there is nothing to warm-start from.
    """
    if previous is None or previous.height == 0:
        return None
    first = previous.group_by("fold", maintain_order=True).agg(pl.col("hyperparameters").first())
    by_fold = dict(zip(first["fold"].to_list(), first["hyperparameters"].to_list()))
    starts = []
    for b, fold in enumerate(folds):
        params = decode_hyperparameters(by_fold[fold]) if by_fold.get(fold) else None
        if params is None or not model.usable_start(params, Z[b]):
            params = fresh_start(model, Z[b], Y[b])
        starts.append(params)
    return _stack_params(starts)


def fresh_start(model: GPModel, Z: np.ndarray, Y: np.ndarray) -> gp.GPParams:
    """The data-aware start a fit on Z (N, Q), Y (N, G) takes without a warm start."""
    return initial_params(model.kernel, *(jnp.asarray(a) for a in model._cast(Z, Y - Y.mean(0))))


def _stack_params(params: Sequence[gp.GPParams]) -> gp.GPParams:
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x, np.float64) for x in xs]), *params)


def _fit_from_better_start(model: GPModel, Z_b, Y_b, Z_test_b, params0: gp.GPParams):
    """fit_predict_many from ``params0`` and from the fresh start, both in one program;
    per fold, the fit with the higher final LML (a NaN one never wins).

    Why: a fit on few perturbations can settle where the kernel carries almost no
    signal, and a warm start would carry that up the training sizes.
    """
    B = Z_b.shape[0]
    fresh = _stack_params([fresh_start(model, Z_b[b], Y_b[b]) for b in range(B)])
    both = jax.tree.map(lambda w, f: np.concatenate([w, f]), params0, fresh)
    twice = lambda a: np.concatenate([a, a])
    fits, padded = model.fit_predict_many(twice(Z_b), twice(Y_b), twice(Z_test_b), both)
    lml = np.asarray(fits.lml, np.float64)
    warm_lml, fresh_lml = lml[:B], lml[B:]
    take_fresh = np.isfinite(fresh_lml) & (~np.isfinite(warm_lml) | (fresh_lml > warm_lml))
    index = np.arange(B) + B * take_fresh
    return jax.tree.map(lambda x: x[index], fits), [padded[i] for i in index]


def _pad_columns(Z: np.ndarray, width: int) -> np.ndarray:
    return Z if Z.shape[1] >= width else np.pad(Z, ((0, 0), (0, width - Z.shape[1])))


def _stack_rows(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """(B, M_max, Q): each block's rows, the shorter ones padded by repeating their first row."""
    m = max(len(b) for b in blocks)
    return np.stack([np.concatenate([b, np.repeat(b[:1], m - len(b), axis=0)]) for b in blocks])


def run_chunk(
    chunk: Chunk,
    data: PerturbationData,
    embedding: Embedding | None,
    splits: Sequence[Split],
    seed: int,
    *,
    gp_dtype: str | None = None,
    previous: pl.DataFrame | None = None,
    pad_width: int = 0,
    compare_fresh_start: bool = False,
) -> pl.DataFrame:
    """Fit and score one chunk over all its folds; rows as in the module docstring.

    ``previous``: this (screen, embedding, model)'s rows at a smaller size,
    whose fitted GP hyperparameters warm-start the fits. ``pad_width``: kNN
    and GP inputs are padded with zero columns to this width where that
    changes no distance or kernel value (:func:`zero_columns_are_ignored`), so
    that every embedding's fits at one size share one compiled program.
    ``compare_fresh_start``: a warm-started GP also fits from the fresh start and
    keeps the better fit per fold (:func:`_fit_from_better_start`).
    """
    blocks = embedding.blocks if embedding is not None else ()
    model = build_model(chunk.model, blocks=blocks, ctrl=data.ctrl, seed=seed)
    # Baselines only look at Z's width, so a one-column placeholder serves them.
    Z = embedding.Z if embedding is not None else np.zeros((data.n_perts, 1))
    if isinstance(model, GPModel):
        model = dataclasses.replace(model, dtype=gp_dtype)
    if isinstance(model, KNN) or (isinstance(model, GPModel) and zero_columns_are_ignored(model.kernel)):
        Z = _pad_columns(Z, pad_width)
    if isinstance(model, GPModel) and len({len(s.train) for s in splits}) == 1:
        # Stacked straight in the fit's dtype: at N=1400 each float64 copy of Y_b is 112 MB.
        dtype = model.dtype or np.float64
        Z_b = np.stack([Z[s.train] for s in splits], dtype=dtype)
        Y_b = np.stack([data.Y[s.train] for s in splits], dtype=dtype)
        params0 = warm_start(model, previous, Z_b, Y_b, [s.fold for s in splits])
        Z_test_b = _stack_rows([Z[s.test] for s in splits])
        if params0 is not None and compare_fresh_start:
            fits, padded = _fit_from_better_start(model, Z_b, Y_b, Z_test_b, params0)
        else:
            fits, padded = model.fit_predict_many(Z_b, Y_b, Z_test_b, params0)
        predictions = [
            Prediction(p.mean[: len(s.test)], p.var[: len(s.test)]) for s, p in zip(splits, padded)
        ]
        hypers = [encode_hyperparameters(jax.tree.map(lambda x: x[b], fits)) for b in range(len(splits))]
    else:
        states = [model.fit(Z[s.train], data.Y[s.train]) for s in splits]
        predictions = [model.predict(state, Z[s.test]) for s, state in zip(splits, states)]
        hypers = [encode_hyperparameters(getattr(state, "fit", None)) for state in states]
    rows = [_fold_rows(chunk, data, s, p, h) for s, p, h in zip(splits, predictions, hypers)]
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
    pad_width: int  # kNN/GP inputs are padded with zero columns to this width


def compute_chunk(chunk: Chunk, context: SweepContext) -> None:
    """Run one chunk (warm-started from its stored smaller size) and store its rows."""
    started = time.perf_counter()
    store = RunStore(context.root)
    emb = None if chunk.embedding == NO_EMBEDDING else context.embeddings[chunk.embedding]
    previous = _previous_part(store, chunk, tuple(context.splits_by_size), context.config.warm_start)
    frame = run_chunk(
        chunk, context.screens[chunk.screen], emb, context.splits_by_size[chunk.size], context.config.seed,
        gp_dtype=context.config.gp_dtype, previous=previous, pad_width=context.pad_width,
        compare_fresh_start=chunk.size < context.config.fresh_start_below,
    )  # fmt: skip
    store.write_part(chunk.key, frame)
    store.record_time(chunk.key, time.perf_counter() - started)


#: Rough relative cost of a model's chunks, to hand out the longest chains first.
_CHAIN_COST = {"gp": 8, "gp_blocks": 8, "knn_ktuned": 2, "ridge": 2, "linear": 2, "knn_k1": 1}


def plan_chains(chunks: Sequence[Chunk]) -> list[list[Chunk]]:
    """Chunks grouped by (screen, embedding, model), each chain in size order (a GP
    fit warm-starts from the smaller size), the costliest chains first."""
    chains: dict[tuple[str, str, str], list[Chunk]] = {}
    for chunk in chunks:
        chains.setdefault((chunk.screen, chunk.embedding, chunk.model), []).append(chunk)
    ordered = [sorted(chain, key=lambda c: c.size) for chain in chains.values()]
    return sorted(ordered, key=lambda chain: -_CHAIN_COST.get(chain[0].model, 0.5) * sum(c.size for c in chain))


def run_sweep(
    screens: Mapping[str, PerturbationData],
    embeddings: Mapping[str, Embedding],
    config: SweepConfig,
    store: RunStore,
    *,
    data_id: str = "",
    progress: bool = True,
    workers: int | None = 1,
) -> pl.DataFrame:
    """Run (or resume) the grid into ``store``; returns the full results table.

    ``data_id`` names the data in the run manifest (e.g. the synthetic seed or
    the input files) so that a folder is never resumed with other data.
    ``workers``: processes to spread the chains over (:mod:`gpllm.evaluate.workers`);
    1 runs in this process, None picks :func:`~gpllm.evaluate.workers.default_workers`.
    """
    missing = [e for e in config.embeddings if e not in embeddings]
    if missing:
        raise InputError(f"config asks for embedding(s) {missing} but only {sorted(embeddings)} were given")
    used = {e: embeddings[e] for e in config.embeddings}
    perts = common_perturbations(screens, used)
    plan = make_plan(perts, n_folds=config.n_folds, sizes=config.sizes, seed=config.seed)
    resumed = store.open({"config": dataclasses.asdict(config), "data": data_id, "perts": list(perts)})
    if resumed:
        log.info("resuming the run in %s", store.root)
    write_json(store.root / "splits.json", plan.to_dict())

    aligned_emb = {name: e.select(perts) for name, e in used.items()}
    context = SweepContext(
        screens={name: s.select(perts) for name, s in screens.items()},
        embeddings=aligned_emb,
        splits_by_size={size: tuple(s for s in plan.splits if s.size == size) for size in plan.sizes},
        config=config,
        root=str(store.root),
        pad_width=max((e.Z.shape[1] for e in aligned_emb.values()), default=0),
    )
    chunks = plan_chunks(config, list(screens), plan.sizes)
    chains = plan_chains([c for c in chunks if not store.has_part(c.key)])
    if workers is None:
        workers = default_workers()
    n_done = len(chunks) - sum(len(chain) for chain in chains)
    with _progress(progress, len(chunks), n_done, workers) as on_event:
        run_chains(chains, compute_chunk, context, workers=workers, on_event=on_event)
    return store.write_results([c.key for c in chunks])


def _previous_part(store: RunStore, chunk: Chunk, sizes: Sequence[int], enabled: bool) -> pl.DataFrame | None:
    """The stored rows of the same (screen, embedding, model) at the next smaller size."""
    smaller = [s for s in sizes if s < chunk.size]
    if not enabled or chunk.model in BASELINES or not smaller:
        return None
    key = dataclasses.replace(chunk, size=max(smaller)).key
    return store.read_part(key) if store.has_part(key) else None


class _progress:
    """A rich progress bar over chunks (or nothing), usable as ``with ... as on_event``,
    where ``on_event("start" | "done", chunk)`` is :func:`run_chains`'s callback."""

    def __init__(self, enabled: bool, total: int, done: int, workers: int):
        self.enabled, self.total, self.done, self.workers = enabled, total, done, workers

    def __enter__(self):
        if not self.enabled:
            return lambda kind, chunk: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description:<56}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), transient=False)  # fmt: skip
        self.bar.__enter__()
        where = "" if self.workers == 1 else f" ({self.workers} workers)"
        self.task = self.bar.add_task(f"sweep{where}", total=self.total, completed=self.done)

        def on_event(kind: str, chunk: Chunk) -> None:
            if kind == "done":
                self.bar.advance(self.task)
            else:
                label = f"{chunk.screen} {chunk.embedding} {chunk.model} n={chunk.size}"
                self.bar.update(self.task, description=label + where)

        return on_event

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.update(self.task, description="done")
            self.bar.__exit__(*exc)
        return False

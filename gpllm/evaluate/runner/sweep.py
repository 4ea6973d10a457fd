"""Running the grid (:mod:`gpllm.evaluate.grid`) into a run folder.

For every screen the perturbations that have every embedding are split once
(5-fold CV, nested downsampling of each training fold; the same plan for all
models, so their rows pair up). Each chunk is fitted and scored over all its
folds (:func:`run_chunk`, rows as in :mod:`gpllm.evaluate.rows`) and its rows
are written atomically to the run folder (:mod:`gpllm.evaluate.runner.store`)
as soon as it finishes, so a killed sweep restarts where it stopped and ends
with the same table. Chains run in this process, in worker processes
(:mod:`gpllm.evaluate.runner.workers`) or on a Dask cluster
(:mod:`gpllm.evaluate.runner.executors`).

A chunk meets its model through the protocol of :mod:`gpllm.models.base` and
the spec that builds it (:mod:`gpllm.models.registry`): the sweep asks the
model to fit and predict a chunk's folds (``fit_predict_folds``), hands each
fold the record it stored at the next smaller training size as a warm start
(read back from that size's part, so a resumed run starts from exactly the
same values as an uninterrupted one), and pads inputs with zero columns for
models that declare ``zero_padding_invariant``. What a model does with a warm
start is its own business (the GP's is in :mod:`gpllm.models.gp`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from gpllm.data.embeddings.assemble import Embedding
from gpllm.data.screens.perturbation_data import PerturbationData, shared_perturbations
from gpllm.errors import CholeskyError, GPLLMError, InputError, WorkerError
from gpllm.evaluate.grid import NO_EMBEDDING, Chunk, SweepConfig, plan_chains, plan_chunks
from gpllm.evaluate.rows import fold_rows, records_by_fold
from gpllm.evaluate.runner.context import SweepContext
from gpllm.evaluate.runner.executors import Executor, LocalExecutor
from gpllm.evaluate.runner.memory_plan import chunk_peaks, held_bytes, plan_phases
from gpllm.evaluate.runner.shared_inputs import share_screens
from gpllm.evaluate.runner.store import RunStore, write_json
from gpllm.evaluate.runner.workers import named_failures
from gpllm.evaluate.splits import Split, make_plan
from gpllm.gp.memory import device_budget
from gpllm.models.base import Fold, fit_predict_folds, folds_per_call, zero_padding_invariant
from gpllm.models.gp import GPModel
from gpllm.models.registry import BuildContext, ModelSpec
from gpllm.progress import run_bar

log = logging.getLogger(__name__)


def _pad_columns(Z: np.ndarray, width: int) -> np.ndarray:
    return Z if Z.shape[1] >= width else np.pad(Z, ((0, 0), (0, width - Z.shape[1])))


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
    """Fit and score one chunk over all its folds; rows as in :mod:`gpllm.evaluate.rows`.

    ``spec``: the model (default: the built-in named ``chunk.model``).
    ``previous``: this (screen, embedding, model)'s rows at a smaller size,
    whose records warm-start the fits. ``pad_width``: inputs of models that
    declare ``zero_padding_invariant`` are padded with zero columns to this
    width (the widest embedding the model runs on), so that all its fits at
    one size share one compiled program.
    """
    records = records_by_fold(previous)
    spec = spec or ModelSpec(chunk.model)
    blocks = embedding.blocks if embedding is not None else ()
    with failures_named(chunk, [s.fold for s in splits]):
        model = spec.build(BuildContext(blocks=blocks, ctrl=data.ctrl, seed=seed, gp_dtype=gp_dtype))
        # Baselines only look at Z's width, so a one-column placeholder serves them.
        Z = embedding.Z if embedding is not None else np.zeros((data.n_perts, 1))
        if zero_padding_invariant(model):
            Z = _pad_columns(Z, pad_width)
    rows = []
    per_call = folds_per_call(model, len(splits))
    for start in range(0, len(splits), per_call):  # each group's copies and fits dropped before the next
        group = splits[start : start + per_call]
        with failures_named(chunk, [s.fold for s in group]):
            folds = [Fold(Z[s.train], data.Y[s.train], Z[s.test]) for s in group]
            fits = fit_predict_folds(model, folds, [records.get(s.fold) for s in group] if records else None)
        for split, fit in zip(group, fits):
            with failures_named(chunk, [split.fold]):
                rows.append(fold_rows(chunk, data, split, fit))
    return pl.concat(rows, how="vertical")


def failures_named(chunk: Chunk, folds: Sequence[int]) -> contextlib.AbstractContextManager:
    """Inside: an error re-raised naming the chunk's model, screen, embedding, size and fold(s)
    (:func:`~gpllm.evaluate.runner.workers.named_failures`: a model's own exception becomes a
    one-line WorkerError with its traceback, which the sweep appends to errors.log); a factor
    that is not positive definite also says what to try."""
    return named_failures(
        lambda err: _where(chunk, _failed_folds(err, folds) if isinstance(err, GPLLMError) else folds),
        lambda err: _cholesky_hint(chunk.model, err) if isinstance(err, CholeskyError) else "",
    )


def _where(chunk: Chunk, folds: Sequence[int]) -> str:
    """'model 'gp' (screen K562, embedding text, size 100, fold 2)'."""
    embedding = "" if chunk.embedding == NO_EMBEDDING else f", embedding {chunk.embedding}"
    fold = f"fold {folds[0]}" if len(folds) == 1 else f"folds {list(folds)}"
    return f"model {chunk.model!r} (screen {chunk.screen}{embedding}, size {chunk.size}, {fold})"


def _failed_folds(err: GPLLMError, folds: Sequence[int]) -> list[int]:
    """The folds a batched fit's error names (its ``datasets``: fold b, or b - B where a fit
    runs every fold twice, from two starts), else all of ``folds``."""
    datasets = getattr(err, "datasets", None)
    if not datasets or len(folds) == 1:
        return list(folds)
    return sorted({folds[d % len(folds)] for d in datasets if d < 2 * len(folds)}) or list(folds)


def _cholesky_hint(model: str, err: CholeskyError) -> str:
    """What to try when a fit's factor is not positive definite, as the config keys that do it."""
    float64 = "" if err.dtype == "float64" else f'[models.{model}] dtype = "float64", '
    return (
        f"try {float64}[models.{model}] noise_ratio_prior = [mean, sd] (a prior on log(noise / signal "
        "variance) that keeps the noise off zero), or, for your own kernel, a White term (more jitter) and a "
        "gram that is finite and positive semi-definite on these inputs"
    )


def compute_chunk(chunk: Chunk, context: SweepContext) -> None:
    """Run one chunk (warm-started from its stored smaller size) and store its rows."""
    started = time.perf_counter()
    store = RunStore(context.root, context.run_id)
    emb = None if chunk.embedding == NO_EMBEDDING else context.embeddings[chunk.embedding]
    spec = context.config.spec(chunk.model)
    previous = _previous_part(store, chunk, spec, tuple(context.splits_by_size), takes_warm_start(context.config, spec))
    frame = run_chunk(
        chunk,
        context.screens[chunk.screen],
        emb,
        context.splits_by_size[chunk.size],
        context.config.seed,
        spec=spec,
        gp_dtype=context.config.gp_dtype,
        previous=previous,
        pad_width=context.pad_widths[chunk.model],
    )
    store.write_part(chunk.key, frame)
    store.record_time(chunk.key, time.perf_counter() - started)


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
    ``workers``: processes to spread the chains over (:mod:`gpllm.evaluate.runner.workers`);
    1 runs in this process, None picks :func:`~gpllm.evaluate.runner.workers.default_workers`.
    ``executor``: where the chains run instead (:mod:`gpllm.evaluate.runner.executors`, e.g. a
    Dask cluster); ``workers`` is then unused.
    """
    missing = [e for e in config.embeddings if e not in embeddings]
    if missing:
        raise InputError(f"config asks for embedding(s) {missing} but only {sorted(embeddings)} were given")
    for spec in config.models:  # a user's reference that does not resolve fails before any fit
        spec.check()
    used = {e: embeddings[e] for e in config.embeddings}
    sources = {f"screen {k}": v.perts for k, v in screens.items()}
    perts = shared_perturbations({**sources, **{f"embedding {k}": v.names for k, v in used.items()}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a clipped size is reported below, with its reason
        plan = make_plan(perts, n_folds=config.n_folds, sizes=config.sizes, seed=config.seed)
    run = {
        "config": config.to_json(),
        "data": data_id,
        "perts": list(perts),
        "sizes_run": list(plan.sizes),
        "code": {f: sha for spec in config.models for f, sha in spec.code().items()},
    }
    if note := _size_note(config, plan.sizes, len(perts)):
        log.warning("%s", note)
        run["size_note"] = note
    resumed = store.open(run)
    executor = executor or LocalExecutor(workers)
    chunks = plan_chunks(config, list(screens), plan.sizes)
    try:
        if resumed:
            log.info("resuming the run in %s", store.root)
        write_json(store.root / "splits.json", plan.to_dict())
        with contextlib.ExitStack() as cleanup:
            aligned = {name: s.select(perts) for name, s in screens.items()}
            if isinstance(executor, LocalExecutor) and executor.count() > 1:  # one copy for all the workers
                folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="gpllm-screens-"))
                aligned = share_screens(aligned, Path(folder))
            aligned_emb = {name: e.select(perts) for name, e in used.items()}
            context = SweepContext(
                screens=aligned,
                embeddings=aligned_emb,
                splits_by_size={size: tuple(s for s in plan.splits if s.size == size) for size in plan.sizes},
                config=config,
                root=str(store.root.resolve()),  # the same path for workers with another cwd
                run_id=store.run_id,
                pad_widths={
                    s.name: max((aligned_emb[e].Z.shape[1] for e in s.embeddings or config.embeddings), default=0)
                    for s in config.models
                },
            )
            _run_chunks(store, executor, context, chunks, progress)
        return store.write_results([c.key for c in chunks])
    finally:
        store.release()


def _run_chunks(
    store: RunStore, executor: Executor, context: SweepContext, chunks: Sequence[Chunk], progress: bool
) -> None:
    """Every chunk without a part in ``store`` computed and stored, within the memory free
    (:func:`_memory_phases`); a part found damaged when the first pass ends is recomputed once."""
    peaks = chunk_peaks(context, chunks)
    for _ in range(2):
        todo = [c for c in chunks if not store.has_part(c.key)]
        if not todo:
            return
        phases = _memory_phases(executor, todo, peaks, context)  # refuses what cannot fit, before any chunk
        with _progress(progress, len(chunks), len(chunks) - len(todo), executor.label) as on_event:
            try:
                for runner, phase in phases:
                    runner.run_chains(schedule(context.config, phase), compute_chunk, context, on_event)
            except WorkerError as err:
                raise store.log_error(err) from None


def _memory_phases(
    executor: Executor, chunks: Sequence[Chunk], peaks: Mapping[Chunk, int], context: SweepContext
) -> list[tuple[Executor, tuple[Chunk, ...]]]:
    """(executor, chunks) to run one after another so that local workers together stay within
    the memory free now (:func:`~gpllm.evaluate.runner.memory_plan.plan_phases`); a cluster's
    workers have memory of their own, so a Dask executor runs every chunk in one phase."""
    if not isinstance(executor, LocalExecutor):
        return [(executor, tuple(chunks))]
    workers = executor.count()
    held = held_bytes(context) if workers > 1 else 0
    phases = plan_phases(chunks, peaks, device_budget(), workers, held)
    return [(dataclasses.replace(executor, at_once=p.at_once), p.chunks) for p in phases]


def _size_note(config: SweepConfig, sizes_run: Sequence[int], n_perts: int) -> str:
    """Why a requested training size was not run as asked ("" if every one was)."""
    clipped = sorted(set(config.sizes) - set(sizes_run))
    if not clipped:
        return ""
    folds = n_perts if config.n_folds == "loo" else config.n_folds
    return (
        f"training size(s) {clipped} cannot be run: {n_perts} perturbations are shared by every "
        f"screen and embedding, so each of the {folds} folds trains on at most {max(sizes_run)}; "
        f"ran sizes {list(sizes_run)} (recorded in run.json)"
    )


def takes_warm_start(config: SweepConfig, spec: ModelSpec) -> bool:
    """Whether ``spec``'s chunks may start from the stored fit at the next smaller size, so
    must run after it: a GP built with ``warm_start`` on, or a user's own model (which may
    use the starts its ``fit_predict_folds`` is handed); never a built-in kNN, ridge or baseline."""
    if not config.warm_start or spec.baseline:
        return False
    if spec.model:
        return True
    return spec.is_gp and bool(dict(spec.options).get("warm_start", GPModel.warm_start))


def schedule(config: SweepConfig, chunks: Sequence[Chunk]) -> list[list[Chunk]]:
    """The chains to run (:func:`~gpllm.evaluate.grid.plan_chains`), with each GP chain that
    takes no warm start (:func:`takes_warm_start`) split into one chain per chunk.

    Those single chunks go first, largest size first, one size after another in turn
    (1400, 1000, ..., 100, 1400, ...): each size's fit is one compiled program, and two
    workers that started the same new size together would both compile it (seconds on
    CPU), where taken in turn the second finds it in the shared compilation cache
    (:mod:`gpllm.compilation_cache`). They also spread over the workers more evenly than
    whole chains. The other chains follow, costliest first.
    """
    single, chains = [], []
    for chain in plan_chains(config, chunks):
        spec = config.spec(chain[0].model)
        (single if spec.is_gp and not takes_warm_start(config, spec) else chains).append(chain)
    by_size: dict[int, list[Chunk]] = {}
    for chunk in (c for chain in single for c in chain):
        by_size.setdefault(chunk.size, []).append(chunk)
    queues = [by_size[size] for size in sorted(by_size, reverse=True)]
    turns = [[queue[i]] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]
    return turns + chains


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

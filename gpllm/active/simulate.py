"""The design simulation: rounds of acquire, measure, refit and score, resumable round by round.

For each repeat r (``split_for``): a random test set is held out, the rest of
the screen is the pool, and a random seed set of the pool is measured first;
all acquisitions of a repeat share its split and seed set, so their curves
pair up. A *chain* is one (acquisition, repeat); each of its rounds

1. rebuilds the GP fitted in the previous round from its stored record (exact
   raw hyperparameters, conditioned in float64 where JAX has it; skipped for
   an acquisition that declares ``needs_gp = False``, as random and coreset
   do) and asks the acquisition for the next batch, which :func:`check_batch`
   validates;
2. refits the GP on everything measured (:meth:`GPModel.fit_predict_folds`:
   from the fresh data-aware start, unless the model asks for warm starts;
   then, only where the previous fit carries no signal, :func:`carries_signal`,
   does a fit from the fresh start race the warm one, keeping the higher LML);
3. scores the held-out set with the usual metrics (means over test
   perturbations) and writes one sealed part to the run folder
   (:class:`~gpllm.evaluate.runner.store.RunStore`).

A round is one task (:func:`compute_round`) that reads what it needs (the
perturbations measured so far, the previous fit's record) from the parts its
chain stored before it, so a resumed chain computes exactly what an
uninterrupted one would, and chains spread over threads of this process
(``threads``, default 1) or worker processes through the sweep's executor
(:class:`~gpllm.evaluate.runner.executors.LocalExecutor`). Round 0 fits the
repeat's seed set for every acquisition alike: the first acquisition's part
serves the others (:func:`sibling_seed_round`).
Each worker runs on all the cores, as this process would, so that its fits
round as they would here: the results do not depend on the number of workers. Row columns: acquisition,
repeat, round, n_measured, pearson_de, pearson_all, mae_de, mae_all, mse_de,
nll, coverage90, strong_found (share of the pool's strongest 10% responders
measured so far: effect size |x - ctrl| over the top-20 DE genes), added (the
perturbations this round measured), record (the GP fit's record, JSON).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import threading
import time
from typing import NamedTuple

import jax
import numpy as np
import polars as pl

from gpllm.active.acquisitions import Acquisition, Design, GreedyGP, acquire_checked, load_acquisition
from gpllm.active.config import ActiveConfig
from gpllm.data.embeddings.assemble import Embedding
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.errors import GPLLMError, InputError, WorkerError
from gpllm.evaluate.metrics import perturbation_metrics, predictive_scores
from gpllm.evaluate.runner.executors import LocalExecutor
from gpllm.evaluate.runner.store import RunStore
from gpllm.evaluate.runner.workers import named_failures
from gpllm.models.base import Fold, fit_predict_folds
from gpllm.models.gp import GPModel
from gpllm.models.registry import BuildContext, ModelSpec
from gpllm.precision import float64_enabled
from gpllm.progress import run_bar

log = logging.getLogger(__name__)

#: The share of the pool counted as strong responders in ``strong_found``.
STRONG_SHARE = 0.1


class Split(NamedTuple):
    """One repeat's split of a screen: test and pool hold screen indices, seed pool indices."""

    test: np.ndarray
    pool: np.ndarray
    seed: np.ndarray


def split_for(n_perts: int, config: ActiveConfig, repeat: int) -> Split:
    """Repeat ``repeat``'s held-out test set, pool (both sorted screen indices) and seed set."""
    rng = np.random.default_rng([config.seed, repeat])
    order = rng.permutation(n_perts)
    n_test = config.test_size(n_perts)
    test, pool = np.sort(order[:n_test]), np.sort(order[n_test:])
    return Split(test, pool, np.sort(rng.choice(len(pool), config.seed_size, replace=False)))


def part_key(acquisition: str, repeat: int, round_: int) -> str:
    return f"{acquisition}|{repeat}|{round_}"


@dataclasses.dataclass(frozen=True)
class Simulation:
    """Everything the rounds need, aligned: row i of ``embedding.Z`` is ``data.perts[i]``.

    Plain data, picklable for worker processes: the GP travels as its ``spec`` (built with
    ``build``) and the acquisitions as their names, resolved where a round runs.
    """

    data: PerturbationData
    embedding: Embedding
    config: ActiveConfig
    spec: ModelSpec
    build: BuildContext

    def __post_init__(self):
        if tuple(self.embedding.names) != tuple(self.data.perts):
            raise InputError("the embedding's rows must be the screen's perturbations, in order")
        self.model()  # a model that is not a GP fails here, before any fit
        self.config.check_pool(self.data.n_perts, "the screen")

    def model(self) -> GPModel:
        """The GP the spec names."""
        model = self.spec.build(self.build)
        if not isinstance(model, GPModel):
            raise InputError(f"gpllm active needs a GP model (a gpllm GPModel), got {type(model).__name__}")
        return model

    def acquisition(self, name: str) -> Acquisition:
        return load_acquisition(name, "[active] acquisitions")

    @property
    def keys(self) -> list[str]:
        """Every part's key, in the results' order (acquisition by acquisition)."""
        return [
            part_key(a, r, k)
            for a in self.config.acquisitions
            for r in range(self.config.repeats)
            for k in range(len(self.config.rounds))
        ]

    def chains(self) -> list[list[Round]]:
        """Every (acquisition, repeat)'s rounds, repeat by repeat (all acquisitions of a repeat
        share its split, so a stopped run leaves whole repeats)."""
        n_rounds = len(self.config.rounds)
        return [
            [Round(a, r, k) for k in range(n_rounds)]
            for r in range(self.config.repeats)
            for a in self.config.acquisitions
        ]

    def key(self, repeat: int, round_: int) -> jax.Array:
        """The PRNG key an acquisition gets in a round (the same for every acquisition)."""
        return jax.random.fold_in(jax.random.fold_in(jax.random.key(self.config.seed), repeat), round_)


class Round(NamedTuple):
    """One round of one chain: its task and its part's key."""

    acquisition: str
    repeat: int
    round: int

    @property
    def key(self) -> str:
        return part_key(self.acquisition, self.repeat, self.round)


@dataclasses.dataclass(frozen=True)
class RoundContext:
    """What a round's task is handed (once per worker): the simulation and the run folder."""

    sim: Simulation
    root: str  # the run folder, absolute (workers may run elsewhere)
    run_id: str  # a part is written only while the folder holds this run


class WarmUp(NamedTuple):
    """A task that compiles a round's programs at one training size, storing nothing."""

    n_measured: int


def warm_ups(sim: Simulation, workers: int) -> list[list[WarmUp]]:
    """The training sizes dealt round-robin to ``workers`` chains, smallest first.

    Why: a fit compiles once per training size (seconds each, most of a cold run's
    first chain), and workers that start their first chains together would each
    compile every size. Dealt out, each worker compiles its share into JAX's
    persistent cache and loads the others' from it.
    """
    sizes = sim.config.rounds
    return [[WarmUp(n) for n in sizes[w::workers]] for w in range(min(workers, len(sizes)))]


def warm_up(sim: Simulation, n_measured: int) -> None:
    """Compile what a round fitting ``n_measured`` perturbations runs (the fit and, where a
    round follows, the built-in GP acquisitions on it), on repeat 0's first pool points."""
    data, Z = sim.data, sim.embedding.Z
    split = split_for(data.n_perts, sim.config, 0)
    measured = np.arange(n_measured)
    train = split.pool[measured]
    base = sim.model()
    model = round_model(base)
    try:
        fit = fit_predict_folds(model, [Fold(Z[train], data.Y[train], Z[split.test])], [None])[0]
        following = [b - a for a, b in zip(sim.config.rounds, sim.config.rounds[1:]) if a == n_measured]
        greedy = [a for a in map(sim.acquisition, sim.config.acquisitions) if isinstance(a, GreedyGP)]
        if following and greedy:
            design = _design(sim, base, split, measured, dict(fit.record))
            for acquire in greedy:
                acquire(design, following[0], sim.key(0, 0))
    except GPLLMError as err:  # the round itself will meet it, and name it
        log.debug("warm-up at %d measured stopped: %s", n_measured, err)


def round_model(base: GPModel) -> GPModel:
    """The GP a round fits: from the fresh start unless warm-started (``fresh_start_below`` 0),
    without the leave-one-out pass no result reads."""
    return dataclasses.replace(base, fresh_start_below=0, leave_one_out=False)


def compute_round(item: Round | WarmUp, context: RoundContext) -> None:
    """Run one round from its chain's stored earlier rounds, and store its row (or a warm-up)."""
    if isinstance(item, WarmUp):
        warm_up(context.sim, item.n_measured)
        return
    started = time.perf_counter()
    store = RunStore(context.root, context.run_id)
    with _compiling_once(context.sim.config.rounds[item.round]):
        frame = sibling_seed_round(context.sim, store, item)
        if frame is None:
            frame = _frame(run_round(context.sim, store, item))
    store.write_part(item.key, frame)
    store.record_time(item.key, time.perf_counter() - started)


def sibling_seed_round(sim: Simulation, store: RunStore, item: Round) -> pl.DataFrame | None:
    """Round 0's part as another acquisition of the repeat stored it, relabelled; None if
    none has, or ``item`` is a later round.

    Why: round 0 fits the repeat's seed set, the same data from the same start for every
    acquisition, so its row is the same but for the acquisition's name.
    """
    if item.round > 0:
        return None
    for other in sim.config.acquisitions:
        key = part_key(other, item.repeat, 0)
        if other != item.acquisition and store.has_part(key):
            return store.read_part(key).with_columns(acquisition=pl.lit(item.acquisition))
    return None


#: One lock per training size: the first round at a size compiles its programs while
#: the other chains in this process wait for them, instead of compiling them again.
_SIZE_LOCKS: collections.defaultdict[int, threading.Lock] = collections.defaultdict(threading.Lock)
_COMPILED_SIZES: set[int] = set()


@contextlib.contextmanager
def _compiling_once(n_measured: int):
    """Inside: a round fitting ``n_measured`` perturbations, alone if it is this process's first at that size."""
    if n_measured in _COMPILED_SIZES:
        yield
        return
    with _SIZE_LOCKS[n_measured]:
        yield
        _COMPILED_SIZES.add(n_measured)


class History(NamedTuple):
    """A chain before a round: pool indices measured (n,), in order, and the last fit's record."""

    measured: np.ndarray
    record: dict | None


def stored_history(sim: Simulation, store: RunStore, split: Split, item: Round) -> History:
    """What ``item``'s chain measured and fitted in its rounds before ``item``, read back from
    their stored parts (exact: the record's raw hyperparameters survive JSON)."""
    index = {sim.data.perts[i]: pool_i for pool_i, i in enumerate(split.pool)}
    measured, record = [], None
    for k in range(item.round):
        row = store.read_part(part_key(item.acquisition, item.repeat, k)).row(0, named=True)
        measured += [index[p] for p in row["added"]]
        record = json.loads(row["record"])
    return History(np.asarray(measured, np.int64), record)


def run_round(sim: Simulation, store: RunStore, item: Round) -> dict:
    """One round: acquire (after the seed set), refit on everything measured, score; its row."""
    data, Z = sim.data, sim.embedding.Z
    acquisition, repeat, round_ = item
    split = split_for(data.n_perts, sim.config, repeat)
    measured, record = stored_history(sim, store, split, item)
    n_measured = sim.config.rounds[round_]
    base = sim.model()
    model, batch = round_model(base), split.seed
    if round_ > 0:
        acquire = sim.acquisition(acquisition)
        needs_gp = getattr(acquire, "needs_gp", True)
        with _failures_named(model.name, acquisition, repeat, round_, len(measured)):
            design = _design(sim, base, split, measured, record, with_gp=needs_gp or base.warm_start)
        size = n_measured - len(measured)
        batch = acquire_checked(acquire, design, size, sim.key(repeat, round_), acquisition)
        # Only a warm-started fit can inherit a fit without signal (fresh fits race nothing).
        if base.warm_start and not carries_signal(design):
            model = dataclasses.replace(model, fresh_start_below=n_measured + 1)
    measured = np.concatenate([measured, batch])
    train = split.pool[measured]
    with _failures_named(model.name, acquisition, repeat, round_, len(measured)):
        fit = fit_predict_folds(model, [Fold(Z[train], data.Y[train], Z[split.test])], [record])[0]
    strong = _strongest(data, split.pool)
    return _score(data, split.test, fit.prediction) | {
        "acquisition": acquisition,
        "repeat": repeat,
        "round": round_,
        "n_measured": len(measured),
        "strong_found": float(np.isin(strong, measured).mean()),
        "added": [data.perts[i] for i in split.pool[batch]],
        "record": json.dumps(dict(fit.record), sort_keys=True),
    }


def _failures_named(model: str, acquisition: str, repeat: int, round_: int, n_measured: int):
    """Inside: an error re-raised naming the model and the round (a model's own exception as a
    one-line WorkerError with its traceback, :func:`~gpllm.evaluate.runner.workers.named_failures`)."""
    where = f"model {model!r} (acquisition {acquisition!r}, repeat {repeat}, round {round_}, {n_measured} measured)"
    return named_failures(lambda err: where)


def _design(
    sim: Simulation, model: GPModel, split: Split, measured: np.ndarray, record: dict, *, with_gp: bool = True
) -> Design:
    """The previous round's GP, rebuilt from its record (in float64 where JAX has it), as
    the acquisition sees it; ``with_gp`` False leaves the state None (an acquisition that
    never looks at the GP is spared the refactorisation)."""
    model = dataclasses.replace(model, dtype="float64") if float64_enabled() else model
    train = split.pool[measured]
    state = model.restore(record, sim.embedding.Z[train], sim.data.Y[train]) if with_gp else None
    return Design(model, state, sim.embedding.Z[split.pool], measured.copy(), np.asarray(sim.data.ctrl))


#: Below this share of the training profiles' spread explained, a fit carries no signal.
MIN_SIGNAL = 1e-2


def carries_signal(design: Design) -> bool:
    """Whether the fitted GP explains at least ``MIN_SIGNAL`` of its training profiles'
    deviation from their mean: |K A^{-1} (Y - m)|_F / |Y - m|_F, from the stored factor.

    Why: a fit on few perturbations can settle where the kernel's variance is ~1e-4 of
    the noise's; the GP then predicts the mean, and warm starts never leave that mode
    (seen at n = 50 on one repeat of the synthetic screen, stuck up to n = 800).
    """
    post = design.state.posterior
    explained = design.model.predict(design.state, post.Z).mean - design.state.offset
    deviation = post.L @ (post.L.T @ post.alpha)  # A alpha = Y - m
    return bool(np.linalg.norm(explained) >= MIN_SIGNAL * np.linalg.norm(deviation))


def _strongest(data: PerturbationData, pool: np.ndarray) -> np.ndarray:
    """Pool indices of the pool's strongest ``STRONG_SHARE`` responders (largest top-20 DE effect)."""
    delta = data.Y[pool] - data.ctrl
    effect = np.linalg.norm(np.take_along_axis(delta, data.de[pool], axis=1), axis=1)
    return np.argsort(-effect, kind="stable")[: max(1, round(STRONG_SHARE * len(pool)))]


def _score(data: PerturbationData, test: np.ndarray, prediction) -> dict:
    """Held-out metrics, each the mean over test perturbations."""
    Y_test, mean = data.Y[test], np.asarray(prediction.mean)
    metrics = perturbation_metrics(Y_test, mean, reference=data.ctrl, de=data.de[test])
    scores = predictive_scores(Y_test, mean, prediction.var)
    out = {
        name: float(np.mean(getattr(metrics, name)))
        for name in ("pearson_de", "pearson_all", "mae_de", "mae_all", "mse_de")
    }
    return out | {"nll": float(np.mean(scores.nll)), "coverage90": float(np.mean(scores.coverage))}


_SCHEMA = {
    "acquisition": pl.String,
    "repeat": pl.Int64,
    "round": pl.Int64,
    "n_measured": pl.Int64,
    "pearson_de": pl.Float64,
    "pearson_all": pl.Float64,
    "mae_de": pl.Float64,
    "mae_all": pl.Float64,
    "mse_de": pl.Float64,
    "nll": pl.Float64,
    "coverage90": pl.Float64,
    "strong_found": pl.Float64,
    "added": pl.List(pl.String),
    "record": pl.String,
}


def _frame(row: dict) -> pl.DataFrame:
    return pl.DataFrame([{name: row[name] for name in _SCHEMA}], schema=_SCHEMA)


def run_simulation(
    sim: Simulation,
    store: RunStore,
    *,
    run: dict,
    progress: bool = True,
    workers: int | None = 1,
    threads: int = 1,
) -> pl.DataFrame:
    """Run (or resume) every chain into ``store``; the results of every round, in a fixed order.

    ``run``: what identifies the run (config, data) in the folder's run.json,
    so that a folder is only ever resumed with the same run. ``workers``: processes the
    chains spread over (1: this process; None: one per core), each on all the cores.
    ``threads``: with one process, the chains it runs at once on threads (default 1: measured
    on 2 cores with the default design, two threads took the same wall time, 798 s against 795,
    for 24% more CPU, since each fit already keeps both cores busy).
    """
    resumed = store.open(run)
    try:
        if resumed:
            log.info("resuming the design simulation in %s", store.root)
        todo = [_unstored(chain, store) for chain in sim.chains()]
        todo = [chain for chain in todo if chain]
        done = len(sim.keys) - sum(len(chain) for chain in todo)
        context = RoundContext(sim, str(store.root.resolve()), store.run_id)
        executor = LocalExecutor(workers, shared_cores=True, threads=threads)
        count = executor.count()
        if count > 1 and todo and jax.config.jax_compilation_cache_dir:  # the workers share compiled programs
            todo = warm_ups(sim, count) + todo
        with run_bar("design simulation", len(sim.keys), done=done, width=40, enabled=progress) as update:

            def on_event(kind: str, item: Round | WarmUp) -> None:
                if isinstance(item, WarmUp):
                    update(f"compiling for {item.n_measured} measured")
                elif kind == "start":
                    update(f"{item.acquisition} repeat {item.repeat + 1}/{sim.config.repeats}")
                else:
                    update(advance=1)

            try:
                executor.run_chains(todo, compute_round, context, on_event)
            except WorkerError as err:  # user code raised: its traceback goes to errors.log
                raise store.log_error(err) from None
        return store.write_results(sim.keys)
    finally:
        store.release()


def _unstored(chain: list[Round], store: RunStore) -> list[Round]:
    """The chain's rounds from its first one not stored on: once a round is computed, the
    later ones are recomputed too (never mixed with parts computed from another history)."""
    first = next((k for k, item in enumerate(chain) if not store.has_part(item.key)), len(chain))
    return chain[first:]

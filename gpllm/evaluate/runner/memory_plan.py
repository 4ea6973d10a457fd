"""How many chunks may run at once within the machine's memory, decided before the first one.

Each chunk's peak is its model's estimate (the ``peak_bytes`` hook of
:mod:`gpllm.models.base`: a GP's is :func:`gpllm.gp.memory.fold_fits_peak_bytes`, its
fit program for the folds in flight plus its staged copies; models without the hook
count 0) plus what the sweep holds around any model (:func:`sweep_held_bytes`: the
folds' copies, the returned fits, scoring's test block). Against what the device has
free when the sweep starts (:func:`gpllm.gp.memory.device_budget`), less what each
worker holds of the inputs:

- a chunk that cannot fit even alone is refused before the first chunk runs,
  naming its model, size, estimate and the limit;
- chunks that fit alone but not ``workers`` at a time run last, with only as
  many workers at once as fit (:class:`Phase`), each still on its own cores, so
  that nothing rounds differently.

``GPLLM_MEMORY_CHECK=off`` (:data:`gpllm.gp.memory.ENV`) skips both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from gpllm.errors import MemoryLimitError
from gpllm.evaluate.grid import NO_EMBEDDING, Chunk
from gpllm.evaluate.runner.context import SweepContext
from gpllm.gp.memory import ENV, GIB, Budget, check_enabled
from gpllm.models.base import folds_per_call, peak_bytes_of, zero_padding_invariant
from gpllm.models.registry import BuildContext


class Phase(NamedTuple):
    """Chunks to run with at most ``at_once`` workers at a time, after the phases before it."""

    at_once: int
    chunks: tuple[Chunk, ...]


def chunk_peaks(context: SweepContext, chunks: Sequence[Chunk]) -> dict[Chunk, int]:
    """Each chunk's estimated peak bytes: its model's ``peak_bytes`` hook at the chunk's training
    size, the screen's genes, the model's input width (padded where the sweep pads it) and folds."""
    peaks, models = {}, {}
    for chunk in chunks:
        screen = context.screens[chunk.screen]
        emb = None if chunk.embedding == NO_EMBEDDING else context.embeddings[chunk.embedding]
        key = (chunk.model, chunk.embedding)
        if key not in models:  # built as the chunk builds it; a GP's build reads no data
            blocks = emb.blocks if emb is not None else ()
            build = BuildContext(
                blocks=blocks, ctrl=screen.ctrl, seed=context.config.seed, gp_dtype=context.config.gp_dtype
            )
            try:
                models[key] = context.config.spec(chunk.model).build(build)
            except Exception:  # noqa: BLE001 - the chunk raises it again, named (sweep.failures_named)
                models[key] = None
        model = models[key]
        if model is None:
            peaks[chunk] = 0
            continue
        width = 1 if emb is None else emb.Z.shape[1]
        if zero_padding_invariant(model):
            width = max(width, context.pad_widths[chunk.model])
        splits = context.splits_by_size[chunk.size]
        n_test = max(len(s.test) for s in splits)
        held = sweep_held_bytes(chunk.size, n_test, screen.n_genes, width, folds_per_call(model, len(splits)))
        peaks[chunk] = peak_bytes_of(model, chunk.size, screen.n_genes, width, len(splits)) + held
    return peaks


def sweep_held_bytes(n_train: int, n_test: int, n_genes: int, width: int, n_folds: int) -> int:
    """Bytes a chunk holds around a model's call on ``n_folds`` folds (float64,
    :func:`~gpllm.evaluate.runner.sweep.run_chunk`; one fold where the model does not
    ``batches_folds``): each fold's copies of its training rows Z (N, Q), Y (N, G) and test
    rows Z (M, Q); each fold's returned fit, a mean and variance (M, G) and held-out residuals
    and variances (N, G) (their upper bound: a variance may be one per row); one fold's test
    block as scoring pads and casts it, the measured profiles and the mean (M, G) each."""
    folds = n_folds * (n_train * (n_genes + width) + n_test * width)
    fits = n_folds * 2 * (n_test + n_train) * n_genes
    scoring = 2 * n_test * n_genes
    return 8 * (folds + fits + scoring)


def held_bytes(context: SweepContext) -> int:
    """Bytes of the inputs a worker process holds of its own (its unpickled copy of the
    screens and embeddings; arrays mapped from a file are shared, not counted)."""
    arrays = [a for s in context.screens.values() for a in (s.Y, s.ctrl, s.de)]
    arrays += [e.Z for e in context.embeddings.values()]
    return sum(a.nbytes for a in arrays if not isinstance(a, np.memmap))


def plan_phases(
    chunks: Sequence[Chunk], peaks: Mapping[Chunk, int], budget: Budget | None, workers: int, held: int = 0
) -> list[Phase]:
    """``chunks`` in phases: those whose peak (``peaks``, bytes) fits ``workers`` times within
    ``budget.free`` less ``held`` per worker (its copy of the inputs) first, all workers at once;
    then, by increasing peak, those that fit only k < ``workers`` at a time, k at a time.
    MemoryLimitError, with the estimate and the limit, for a chunk that fits not even alone.
    One phase of everything where the budget is unknown or the check is off."""
    if budget is None or not check_enabled() or not chunks:
        return [Phase(workers, tuple(chunks))] if chunks else []
    free = budget.free - workers * held
    too_big = [c for c in chunks if peaks.get(c, 0) > budget.free - held]
    if too_big:
        worst = max(too_big, key=lambda c: peaks[c])
        raise MemoryLimitError(
            f"model {worst.model!r} at training size {worst.size} (screen {worst.screen}) needs about "
            f"{_size(peaks[worst])}{_held(held)}, but only {_size(budget.free)} is free ({budget.source}); "
            f"{len(too_big)} chunk(s) cannot fit: drop the size(s) {sorted({c.size for c in too_big})} "
            f"or use a machine with more memory ({ENV}=off runs anyway)"
        )
    at_once = {c: min(workers, max(1, free // peaks[c])) if peaks.get(c, 0) > 0 else workers for c in chunks}
    phases = []
    for k in sorted(set(at_once.values()), reverse=True):
        phases.append(Phase(int(k), tuple(c for c in chunks if at_once[c] == k)))
    return phases


def _held(held: int) -> str:
    return f" beside the {_size(held)} of inputs each worker holds" if held else ""


def _size(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB // 10 else f"{n_bytes / 2**20:.1f} MiB"

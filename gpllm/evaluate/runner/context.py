"""What every chunk of a sweep runs on: one frozen record, handed once to each worker."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gpllm.data.embeddings.assemble import Embedding
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.evaluate.grid import SweepConfig
from gpllm.evaluate.splits import Split


@dataclasses.dataclass(frozen=True)
class SweepContext:
    """Everything a chunk needs, aligned to the shared perturbations; picklable for workers."""

    screens: Mapping[str, PerturbationData]
    embeddings: Mapping[str, Embedding]
    splits_by_size: Mapping[int, tuple[Split, ...]]  # in increasing size
    config: SweepConfig
    root: str  # the run folder
    run_id: str  # the run's id: a part is written only while the folder holds this run
    pad_widths: Mapping[str, int]  # per model: the widest embedding it runs on (see sweep.run_chunk)

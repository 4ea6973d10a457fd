"""``gpllm reproduce``: the paper's whole evaluation from one config.

Data flow::

    config (TOML or defaults)
      -> screens  {name: PerturbationData}   synthetic draw, or h5ad files (path or registry name)
      -> vectors  {source: GeneVectors}      synthetic, GenePT pickle/table, ProtT5 h5, or
                                             gene descriptions embedded locally
      -> shared perturbations, embeddings {"text", "sequence", "text+sequence"} (PCA k per block)
      -> run_sweep -> results.parquet -> write_report -> tables + figures

With no config it runs the full grid on the embedded synthetic screens (two
cell lines, 5 folds, sizes 100..1400, GP/kNN/ridge on three embeddings plus
the two baselines). A config is a TOML file; see ``experiments/*.toml``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NamedTuple

import polars as pl

from gpllm.errors import InputError
from gpllm.evaluate.runner.executors import Executor, open_executor
from gpllm.evaluate.runner.store import RunStore
from gpllm.evaluate.runner.sweep import run_sweep
from gpllm.inputs import load_inputs, make_embeddings
from gpllm.run_config import ReproduceConfig

__all__ = ["ReproduceConfig", "Reproduction", "load_inputs", "reproduce"]


class Reproduction(NamedTuple):
    results: pl.DataFrame
    report: dict[str, Path]
    out_dir: Path


def reproduce(
    config: ReproduceConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    workers: int | None = 1,
    executor: Executor | None = None,
) -> Reproduction:
    """Run (or resume) the config's sweep into ``out_dir`` and write its report there.

    ``workers``: local processes, as :func:`~gpllm.evaluate.runner.sweep.run_sweep` (None: one
    per core on CPU). ``executor``: an open executor to run on instead; by default
    the config's (a Dask cluster is connected to before anything is read or written).
    """
    from gpllm.report import write_report

    if config.combos is not None:
        from gpllm.reproduce_combos import reproduce_combos

        return Reproduction(*reproduce_combos(config, out_dir, progress=progress), Path(out_dir))
    if executor is None:
        with contextlib.closing(open_executor(config.executor, workers=workers)) as opened:
            return reproduce(config, out_dir, progress=progress, executor=opened)
    out = Path(out_dir)
    inputs = load_inputs(config, progress=progress)
    if config.evaluate:
        unknown = sorted(set(config.evaluate) - set(inputs.screens))
        if unknown:
            raise InputError(f"evaluate names screen(s) {unknown}; loaded: {sorted(inputs.screens)}")
        inputs = inputs._replace(screens={k: v for k, v in inputs.screens.items() if k in config.evaluate})
    first = next(iter(inputs.screens.values()))
    embeddings = make_embeddings(
        inputs.vectors, first.perts, config.sweep.embeddings, k=config.pca_k, missing=config.missing
    )
    data_id = f"{config.name}:{inputs.data_id}:k={config.pca_k}:{config.missing}"
    results = run_sweep(
        inputs.screens, embeddings, config.sweep, RunStore(out), data_id=data_id, progress=progress, executor=executor
    )
    report = write_report(results, out / "report")
    return Reproduction(results, report, out)

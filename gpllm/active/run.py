"""``gpllm active``: a design simulation on one screen of a config, and its figure and table.

Data flow::

    config (TOML or defaults: the synthetic screens)      the reproduce config's data sections
      -> screen, embedding, GP spec                       [active] screen, embedding, model
      -> run_simulation -> results.parquet                one row per (acquisition, repeat, round)
      -> learning_curves.png, measurements_to_reach.csv

Every input is checked before any data is read where it can be (the
``[active]`` keys, acquisitions, the model), and the budget against the pool
as soon as the screen is known, before any fit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import polars as pl

from gpllm import plugins
from gpllm.active.acquisitions import load_acquisition
from gpllm.active.config import ActiveConfig
from gpllm.active.curves import measurements_to_reach
from gpllm.active.figures import REFERENCE, learning_curves_png
from gpllm.active.simulate import Simulation, run_simulation
from gpllm.atomic import atomic_write
from gpllm.data.screens.perturbation_data import shared_perturbations
from gpllm.errors import InputError
from gpllm.evaluate.runner.store import RunStore
from gpllm.inputs import load_inputs, make_embeddings
from gpllm.models.registry import BuildContext, ModelSpec, spec_from
from gpllm.run_config import ReproduceConfig, read_config

log = logging.getLogger(__name__)


def load_configs(path: str | Path | None) -> tuple[ReproduceConfig, ActiveConfig]:
    """The data sections (as ``gpllm reproduce`` reads them) and the ``[active]`` section of a
    config file; with no file, the synthetic default and the default design."""
    if path is None:
        return ReproduceConfig(), ActiveConfig()
    raw = read_config(path)
    base = Path(path).parent
    return ReproduceConfig.from_dict(raw, base=base, where=str(path)), ActiveConfig.from_dict(
        raw.get("active", {}), base
    )


class ActiveRun(NamedTuple):
    results: pl.DataFrame
    table: pl.DataFrame | None  # measurements to 90% / 95% of random (None without random)
    paths: dict[str, Path]
    out_dir: Path


def model_spec(data_config: ReproduceConfig, config: ActiveConfig) -> ModelSpec:
    """The config's ``[models.NAME]`` of that name, or a built-in GP / a ``module:attr`` kernel."""
    where = "[active] model"
    specs = {s.name: s for s in data_config.sweep.models}
    spec = specs[config.model] if config.model in specs else spec_from(config.model, where)
    if not spec.is_gp:
        raise InputError(
            f"{where} {config.model!r} is not a GP: a design simulation needs the GP's predictive "
            "covariance; give 'gp', 'gp_blocks', a [models.NAME] with a kernel, or a 'module:attr' kernel"
        )
    spec.check(where=where)
    return spec


def run_active(
    data_config: ReproduceConfig,
    config: ActiveConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    workers: int | None = 1,
    threads: int = 1,
) -> ActiveRun:
    """Run (or resume) the design simulation into ``out_dir``; write its figure and table there.

    ``workers``: processes the chains spread over (1: this process; None: one per core);
    ``threads``: with one process, chains it runs at once on threads (default 1); the results
    depend on neither (:mod:`gpllm.active.simulate`)."""
    out = Path(out_dir)
    acquisitions = {name: load_acquisition(name, "[active] acquisitions") for name in config.acquisitions}
    spec = model_spec(data_config, config)
    inputs = load_inputs(data_config)
    screen = config.screen or next(iter(inputs.screens))
    if screen not in inputs.screens:
        raise InputError(f"[active] screen {screen!r} is not among the config's screens {sorted(inputs.screens)}")
    emb_name = config.embedding or data_config.embeddings[-1]
    data = inputs.screens[screen]
    embedding = make_embeddings(
        inputs.vectors, data.perts, [emb_name], k=data_config.pca_k, missing=data_config.missing
    )[emb_name]
    perts = shared_perturbations({f"screen {screen}": data.perts, f"embedding {emb_name}": embedding.names})
    data, embedding = data.select(perts), embedding.select(perts)
    build = BuildContext(blocks=embedding.blocks, ctrl=data.ctrl, seed=config.seed, gp_dtype=config.gp_dtype)
    sim = Simulation(data, embedding, config, spec, build)  # checks the model, and the budget against the pool
    run = {
        "active": config.to_json(),
        "model": spec.to_json(),
        "screen": screen,
        "embedding": emb_name,
        "data": f"{data_config.name}:{inputs.data_id}:k={data_config.pca_k}:{data_config.missing}",
        "perts": list(perts),
        "code": {**plugins.code_fingerprint(config.acquisitions, "[active] acquisitions"), **spec.code()},
    }
    results = run_simulation(sim, RunStore(out), run=run, progress=progress, workers=workers, threads=threads)
    paths = {
        "results": out / "results.parquet",
        "figure": learning_curves_png(results, out / "learning_curves.png", title=f"{screen}, {emb_name}"),
    }
    table = None
    if REFERENCE in acquisitions:
        table = measurements_to_reach(results, reference=REFERENCE)
        paths["table"] = atomic_write(out / "measurements_to_reach.csv", lambda tmp: table.write_csv(tmp))
    else:
        log.warning(
            "no %r acquisition in the run: the measurements-to-reach table compares with it, so it is not written",
            REFERENCE,
        )
    return ActiveRun(results, table, paths, out)

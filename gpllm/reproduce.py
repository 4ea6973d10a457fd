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
import dataclasses
import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from gpllm.data.screens.perturbation_data import PerturbationData, intersect_perturbations
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.configs import check_config
from gpllm.inputs import load_screens, load_vectors_from, make_embeddings
from gpllm.errors import InputError
from gpllm.evaluate.executors import Executor, check_executor, open_executor
from gpllm.evaluate.store import RunStore, fingerprint
from gpllm.evaluate.sweep import DEFAULT_MODELS, SweepConfig, run_sweep
from gpllm.models.registry import ModelSpec, spec_from

log = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class ReproduceConfig:
    """Everything one run needs; ``from_toml`` reads it from a file.

    data: ``{"kind": "synthetic", "seed": 0, "shape": "essential", "overrides": {...}}`` or
    ``{"kind": "files", "screens": {name: {...}}, "embeddings": {source: {...}}}``
    (see :func:`load_screens` / :func:`load_vectors_from` for the entries).
    embeddings: the inputs to compare; "a+b" concatenates sources a and b as blocks.
    evaluate: the screens to run the grid on (default all); the others still
    count for the shared perturbations (the paper keeps those K562 and RPE1 share).
    executor: where the sweep's chains run, "local" or "dask://HOST:PORT"
    (:mod:`gpllm.evaluate.executors`); never part of the run's identity, so a
    folder started on a cluster resumes locally and the other way round.
    combos: a ``[combos]`` table: evaluate two-gene perturbations instead
    (:mod:`gpllm.reproduce_combos`).
    """

    name: str = "demo"
    data: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "synthetic", "seed": 0})
    embeddings: tuple[str, ...] = ("text", "sequence", "text+sequence")
    pca_k: int | None = 50
    missing: str = "drop"
    sweep: SweepConfig = SweepConfig()
    evaluate: tuple[str, ...] = ()
    executor: str = "local"
    combos: Mapping[str, Any] | None = None

    def __post_init__(self):
        object.__setattr__(self, "executor", check_executor(self.executor))

    @property
    def folder_name(self) -> str:
        """``name`` as a safe file name, so that the default folder stays inside ``results/``
        (``"../../x"`` -> ``"x"``, ``"/abs/run"`` -> ``"abs_run"``)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name).strip("._")
        return safe or "run"

    @classmethod
    def from_toml(cls, path: str | Path) -> ReproduceConfig:
        return cls.from_dict(read_config(path), base=Path(path).parent, where=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], base: Path = Path("."), where: str = "config") -> ReproduceConfig:
        check_config(raw, where)  # every key at every level, before anything is read or written
        sweep_raw = dict(raw.get("sweep", {}))
        if "models" in sweep_raw or "models" in raw:
            sweep_raw["models"] = _model_specs(sweep_raw.get("models"), raw.get("models", {}), base, where)
        embeddings = tuple(raw.get("embeddings", cls.embeddings))
        sweep = SweepConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in sweep_raw.items()},
                            **({} if "embeddings" in sweep_raw else {"embeddings": embeddings}))  # fmt: skip
        data = _resolve_paths(dict(raw.get("data", {"kind": "synthetic", "seed": 0})), base)
        pca_k = raw.get("pca_k", 50)
        return cls(raw.get("name", "run"), data, embeddings, None if pca_k in (0, None) else int(pca_k),
                   raw.get("missing", "drop"), sweep, tuple(raw.get("evaluate", ())),
                   raw.get("executor", "local"), raw.get("combos"))  # fmt: skip


def read_config(path: str | Path) -> dict[str, Any]:
    """A config file's TOML as a dict; InputError if it is missing or not valid TOML."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"config {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"config {path} is not valid TOML: {err}") from None


def _model_specs(listed, tables: Mapping[str, Any], base: Path, where: str) -> tuple[ModelSpec, ...]:
    """The run's models: ``[sweep] models`` (built-in names, ``module:attr`` references, or
    names of ``[models.NAME]`` tables), default the built-in set plus every table.

    Relative ``.py`` paths in references are relative to the config's folder.
    """
    if not isinstance(tables, Mapping) or not all(isinstance(v, Mapping) for v in tables.values()):
        raise InputError(f"{where}: [models] must hold one table per model, e.g. [models.my_gp]")
    specs = {name: spec_from({**table, "name": name}, f"{where} [models.{name}]", base) for name, table in tables.items()}
    if listed is None:
        listed = [*DEFAULT_MODELS, *specs]
    if not isinstance(listed, (list, tuple)):
        raise InputError(f"{where}: [sweep] models must be a list of model names, got {listed!r}")
    unlisted = sorted(set(specs) - set(listed))
    if unlisted:
        raise InputError(f"{where}: [models.{unlisted[0]}] is defined but not in [sweep] models {list(listed)}")
    out = []
    for entry in listed:
        key = f"[models.{entry}]" if entry in specs else "[sweep] models"
        spec = specs[entry] if entry in specs else spec_from(entry, f"{where} {key}", base)
        spec.check(where=f"{where} {key}")  # the user's references resolve before any data is read
        out.append(spec)
    return tuple(out)


def _resolve_paths(data: dict, base: Path) -> dict:
    """Relative file entries (path, idmapping, descriptions) are relative to the config file's folder."""
    for group in ("screens", "embeddings"):
        for entry in data.get(group, {}).values():
            for key in ("path", "idmapping", "descriptions"):
                if key in entry and not Path(entry[key]).is_absolute():
                    entry[key] = str((base / entry[key]).resolve())
    return data


class Inputs(NamedTuple):
    """Screens restricted to shared perturbations, the raw vectors, and a data id for the run manifest."""

    screens: dict[str, PerturbationData]
    vectors: dict[str, GeneVectors]
    data_id: str


def load_inputs(config: ReproduceConfig, *, progress: bool = False) -> Inputs:
    """The config's screens (restricted to the perturbations all of them share) and vectors
    (a progress bar over local text embedding if ``progress``)."""
    data = dict(config.data)
    kind = data.get("kind", "synthetic")
    if kind == "synthetic":
        from gpllm.data.synthetic.screens import make_screens, synthetic_config

        generator = synthetic_config(data.get("shape", "essential"), **dict(data.get("overrides", {})))
        draw = make_screens(int(data.get("seed", 0)), generator)
        screens, vectors = draw.screens, draw.vectors
    elif kind == "files":
        if not data.get("screens") or not data.get("embeddings"):
            raise InputError(f"config {config.name!r}: kind='files' needs [data.screens.*] and [data.embeddings.*]")
        screens = load_screens(data["screens"])
        needed = {p for screen in screens.values() for p in screen.perts}
        vectors = {name: load_vectors_from(name, entry, needed, progress=progress) for name, entry in data["embeddings"].items()}
    else:
        raise InputError(f"config {config.name!r}: data.kind must be 'synthetic' or 'files', got {kind!r}")
    shared = intersect_perturbations(*screens.values())
    return Inputs(dict(zip(screens, shared)), dict(vectors), fingerprint(data))


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

    ``workers``: local processes, as :func:`~gpllm.evaluate.sweep.run_sweep` (None: one
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
    embeddings = make_embeddings(inputs.vectors, first.perts, config.sweep.embeddings, k=config.pca_k,
                                 missing=config.missing)  # fmt: skip
    data_id = f"{config.name}:{inputs.data_id}:k={config.pca_k}:{config.missing}"
    results = run_sweep(inputs.screens, embeddings, config.sweep, RunStore(out), data_id=data_id,
                        progress=progress, executor=executor)  # fmt: skip
    report = write_report(results, out / "report")
    return Reproduction(results, report, out)

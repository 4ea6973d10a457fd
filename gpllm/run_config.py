"""A ``gpllm reproduce`` config: a TOML file (or the defaults) read into a :class:`ReproduceConfig`.

Every key is checked first (:func:`gpllm.configs.check_config`); then the
models are resolved into specs (a user's references must load before any
data is read), relative file entries are made relative to the config's
folder, and the ``[sweep]`` table becomes a
:class:`~gpllm.evaluate.grid.SweepConfig`. Read by ``gpllm reproduce``
(:mod:`gpllm.reproduce`) and ``gpllm active`` (:mod:`gpllm.active.run`);
nothing here runs or loads data (:mod:`gpllm.inputs` loads it).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpllm.configs import check_config
from gpllm.errors import InputError
from gpllm.evaluate.grid import DEFAULT_MODELS, SweepConfig
from gpllm.evaluate.runner.executors import check_executor
from gpllm.models.registry import ModelSpec, spec_from


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
    (:mod:`gpllm.evaluate.runner.executors`); never part of the run's identity, so a
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
        sweep = SweepConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in sweep_raw.items()},
            **({} if "embeddings" in sweep_raw else {"embeddings": embeddings}),
        )
        data = _resolve_paths(dict(raw.get("data", {"kind": "synthetic", "seed": 0})), base)
        pca_k = raw.get("pca_k", 50)
        return cls(
            raw.get("name", "run"),
            data,
            embeddings,
            None if pca_k in (0, None) else int(pca_k),
            raw.get("missing", "drop"),
            sweep,
            tuple(raw.get("evaluate", ())),
            raw.get("executor", "local"),
            raw.get("combos"),
        )


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
    specs = {
        name: spec_from({**table, "name": name}, f"{where} [models.{name}]", base) for name, table in tables.items()
    }
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

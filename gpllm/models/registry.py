"""Models by name: the built-in ones, and a user's own from ``module:attr``.

A :class:`ModelSpec` is what a config or the command line says about one
model: a built-in name (``"gp"``, ``"ridge"``...), or a reference to the
user's own code (:mod:`gpllm.plugins`):

- ``kernel = "my_kernels.py:ProjectedRBF"``: a GP on that kernel;
- ``model = "my_models.py:MyModel"``: any object implementing the model
  protocol (:mod:`gpllm.models.base`);

plus GP options (``optimizer``: a name or ``module:attr`` of an optax
transformation, ``max_steps``, ``learning_rate``, ``gtol``, ``ftol``,
``dtype``, ``fresh_start_below``) and the embeddings it runs on. A
reference may name an instance, a class (built with no arguments) or a
factory function; a factory that takes one argument receives the
:class:`BuildContext` (the embedding's column blocks, the control profile,
the seed), e.g. to build one kernel per embedding block.

Specs are plain data (picklable for worker processes, JSON for run.json);
:meth:`ModelSpec.build` resolves them where the model is used, and
:meth:`ModelSpec.check` resolves them once up front so that a bad reference
fails before any fitting, naming its config key.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpllm import plugins
from gpllm.errors import InputError
from gpllm.gp.fit import FitOptions
from gpllm.gp.kernels import RBF, Active, Kernel
from gpllm.models.base import Model, check_model
from gpllm.models.baselines import Control, NonControlMean, RandomPerturbation
from gpllm.models.gp import SCALED_GP_FIT_OPTIONS, GPModel
from gpllm.models.gp_select import rbf_or_rbf_linear
from gpllm.models.knn import KNN
from gpllm.models.ridge import Ridge

Blocks = tuple[tuple[str, int, int], ...]


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What a model may depend on besides its own options.

    blocks: the embedding's (name, start, stop) column blocks; ctrl: (G,) the
    control profile; seed: the sweep's seed; gp_dtype: the precision GP fits
    run in (None: the inputs').
    """

    blocks: Blocks = ()
    ctrl: Any = None
    seed: int = 0
    gp_dtype: str | None = None


def _per_block_kernel(blocks: Blocks) -> Kernel:
    if not blocks:
        raise InputError("gp_blocks needs the embedding's blocks")
    return sum((Active(RBF(), start, stop) for _, start, stop in blocks[1:]), Active(RBF(), *blocks[0][1:]))


def _control(context: BuildContext) -> Model:
    if context.ctrl is None:
        raise InputError("the control baseline needs the screen's ctrl profile")
    return Control(context.ctrl)


#: Built-in models; "gp" and "gp_blocks" are the kernels GP specs default to; "gp_scaled" is
#: the GP with per-gene scales on RBF (:data:`BUILTIN_FIT_DEFAULTS`), one GPModel, so `gpllm active`
#: and a config's GP options take it; the recommended GP, "gp_select" (BUILTIN_MODELS), fits it on
#: RBF and on RBF + Linear and keeps the better by leave-one-out density (gpllm.models.gp_select).
BUILTIN_KERNELS: dict[str, Callable[[BuildContext], Kernel]] = {
    "gp": lambda context: RBF(),
    "gp_blocks": lambda context: _per_block_kernel(context.blocks),
    "gp_scaled": lambda context: RBF(),
}
#: Fit options a built-in GP starts from (a config's own options override them).
BUILTIN_FIT_DEFAULTS: dict[str, dict[str, Any]] = {"gp_scaled": SCALED_GP_FIT_OPTIONS}
BUILTIN_MODELS: dict[str, Callable[[BuildContext], Model]] = {
    "knn_k1": lambda context: KNN(k=1),
    "knn_ktuned": lambda context: KNN(k="tune"),
    "ridge": lambda context: Ridge(lam="loo"),
    "linear": lambda context: Ridge(lam=0.0),
    "random_perturbation": lambda context: RandomPerturbation(seed=context.seed),
    "nonctrl_mean": lambda context: NonControlMean(),
    "control": _control,
    # gp_scaled's GP on RBF and on RBF + Linear, the kernel chosen per fit by LOO density.
    "gp_select": lambda context: rbf_or_rbf_linear(context.gp_dtype),
}
BUILTINS = (*BUILTIN_KERNELS, *BUILTIN_MODELS)
#: Models that ignore the embedding: the sweep runs them once per screen.
BASELINES = frozenset({"random_perturbation", "nonctrl_mean", "control"})
#: Rough relative cost of a built-in model's chunks, so the sweep hands out the longest
#: chains first; a GP, and any model of a user's, costs GP_CHAIN_COST (the costly end,
#: so it starts early).
BUILTIN_CHAIN_COSTS = {
    "knn_ktuned": 2,
    "ridge": 2,
    "linear": 2,
    "knn_k1": 1,
    "random_perturbation": 0.5,
    "nonctrl_mean": 0.5,
    "control": 0.5,
    "gp_select": 16,  # two GP fits
}
GP_CHAIN_COST = 8

#: Options a GP spec accepts (FitOptions' fields, and the model's own).
FIT_OPTIONS = tuple(f.name for f in dataclasses.fields(FitOptions))
GP_OPTIONS = (*FIT_OPTIONS, "dtype", "fresh_start_below", "float64_below", "center", "spread_folds", "warm_start")
SPEC_KEYS = ("name", "kernel", "model", "embeddings", "baseline", *GP_OPTIONS)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model of a run, as a config states it (see the module docstring).

    name: the model's name in tables (a built-in name, or the user's choice).
    kernel / model: ``module:attr`` references (at most one); neither means a built-in.
    options: GP options as (key, value) pairs. embeddings: run only on these
    (default: all). baseline: ignores the embedding (built-in baselines are).
    """

    name: str
    kernel: str | None = None
    model: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    embeddings: tuple[str, ...] = ()
    baseline: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "|/\\"):
            raise InputError(f"model name {self.name!r} must be a non-empty string without '|', '/' or '\\'")
        if self.kernel and self.model:
            raise InputError(f"model {self.name!r}: give 'kernel' or 'model', not both")
        if self.name in BASELINES:
            object.__setattr__(self, "baseline", True)
        if not (self.kernel or self.model) and self.name not in BUILTINS:
            raise InputError(
                f"unknown model {self.name!r}; built-in: {sorted(BUILTINS)}, or a 'module:attr' "
                "reference to your own model or kernel"
            )
        bad = sorted(set(dict(self.options)) - set(GP_OPTIONS))
        if bad:
            raise InputError(f"model {self.name!r}: unknown option(s) {bad}; known: {sorted(GP_OPTIONS)}")
        if self.options and not self.is_gp:
            raise InputError(f"model {self.name!r}: options {sorted(dict(self.options))} apply to GP models only")
        object.__setattr__(self, "options", tuple(sorted(dict(self.options).items())))
        object.__setattr__(self, "embeddings", tuple(self.embeddings))

    @property
    def is_gp(self) -> bool:
        return bool(self.kernel) or self.name in BUILTIN_KERNELS

    @property
    def chain_cost(self) -> float:
        """Relative cost of a chunk per unit of training size (:data:`BUILTIN_CHAIN_COSTS`)."""
        return GP_CHAIN_COST if self.kernel or self.model else BUILTIN_CHAIN_COSTS.get(self.name, GP_CHAIN_COST)

    def build(
        self, context: BuildContext = BuildContext(), base: Path | None = None, where: str | None = None
    ) -> Model:
        """The model, for an embedding with ``context.blocks``; references resolve against
        ``base``; errors name ``where`` (default: the model's name)."""
        where = where or f"model {self.name!r}"
        if not (self.model or self.kernel or self.is_gp):
            return BUILTIN_MODELS[self.name](context)
        if self.model or self.kernel:
            key = "model" if self.model else "kernel"
            built = _resolve(
                plugins.load_reference(getattr(self, key), f"{where} {key}", base), context, f"{where} {key}"
            )
            kernel = _checked_plugin(built, key, getattr(self, key), f"{where} {key}")
            if not isinstance(kernel, Kernel):
                return kernel  # the user's own model
        else:
            kernel = BUILTIN_KERNELS[self.name](context)
        options = dict(self.options)
        for name in FIT_OPTIONS:
            options.pop(name, None)
        options.setdefault("dtype", context.gp_dtype)
        return GPModel(kernel=kernel, options=self._fit_options(base, where), name=self.name, **options)

    def _fit_options(self, base: Path | None, where: str) -> FitOptions:
        fit = {**BUILTIN_FIT_DEFAULTS.get(self.name, {}), **{k: v for k, v in self.options if k in FIT_OPTIONS}}
        if isinstance(fit.get("optimizer"), str) and plugins.is_reference(fit["optimizer"]):
            found = plugins.load_reference(fit["optimizer"], f"{where} optimizer", base)
            fit["optimizer"] = _resolve(found, BuildContext(), f"{where} optimizer")
        try:
            return FitOptions(**fit)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None

    def check(self, base: Path | None = None, where: str | None = None) -> None:
        """Resolve every reference and option now, so that a bad one fails before any data
        is read: the module imports, the attribute exists, and what it names is a kernel, a
        model or an optax transformation. A factory that takes the build context is built
        (and checked) per embedding instead, since it may depend on the embedding's blocks."""
        where = where or f"model {self.name!r}"
        for key in ("model", "kernel"):
            reference = getattr(self, key)
            if reference:
                found = plugins.load_reference(reference, f"{where} {key}", base)
                if _takes_context(found):
                    _check_factory_signature(found, f"{where} {key}")
                else:
                    _checked_plugin(_resolve(found, BuildContext(), f"{where} {key}"), key, reference, f"{where} {key}")
        if self.is_gp or self.model:
            self._fit_options(base, where)

    def code(self, base: Path | None = None) -> dict[str, str]:
        """{source file: sha256} of the user's code this model runs (kernel, model, optimizer
        references; empty for a built-in): part of a run's identity (:func:`gpllm.plugins.code_fingerprint`)."""
        optimizer = dict(self.options).get("optimizer")
        references = (self.kernel, self.model, optimizer if isinstance(optimizer, str) else None)
        return plugins.code_fingerprint(references, f"model {self.name!r}", base)

    def to_json(self) -> dict:
        """The spec as a config table (what :func:`spec_from` reads back)."""
        out = {"name": self.name, **dict(self.options)}
        for key in ("kernel", "model", "embeddings", "baseline"):
            if getattr(self, key):
                out[key] = list(self.embeddings) if key == "embeddings" else getattr(self, key)
        return out


def _takes_context(obj: Any) -> bool:
    """A plain function (not a class) with at least one parameter: a factory of the context."""
    if isinstance(obj, type) or not callable(obj) or isinstance(obj, Kernel) or hasattr(obj, "init"):
        return False
    try:
        return len(inspect.signature(obj).parameters) >= 1
    except (TypeError, ValueError):
        return False


def _check_factory_signature(factory: Callable, where: str) -> None:
    """InputError naming ``factory`` (and its file) and the call gpllm makes, unless it can be
    called with that one argument: a :class:`BuildContext`."""
    try:
        inspect.signature(factory).bind(BuildContext())
    except TypeError:
        name = getattr(factory, "__qualname__", repr(factory))
        source = getattr(getattr(factory, "__code__", None), "co_filename", None)
        raise InputError(
            f"{where}: factory {name}{inspect.signature(factory)}"
            + (f" in {source}" if source else "")
            + " cannot take what gpllm passes a factory: one argument, a gpllm.models.registry.BuildContext "
            f"(fields blocks, ctrl, seed, gp_dtype); write it as def {name}(context): ... (e.g. context.blocks)"
        ) from None


def _checked_plugin(obj: Any, key: str, reference: str, where: str) -> Any:
    """``obj`` if it is what ``key`` asks for: a Kernel for ``kernel``; a model (or a
    kernel, then a GP on it) for ``model``; else InputError naming what is missing."""
    if isinstance(obj, Kernel):
        return obj
    if key == "kernel":
        raise InputError(f"{where}: {reference!r} gave {obj!r}, not a gpllm.gp.Kernel")
    return check_model(obj, where)


def _resolve(obj: Any, context: BuildContext, where: str) -> Any:
    """An instance as it is (a kernel, a model, an optax transformation); a class built
    with no arguments; a factory function called with the context (if it takes one
    parameter) or with nothing."""
    built_already = isinstance(obj, Kernel) or callable(getattr(obj, "fit", None)) or hasattr(obj, "init")
    if not callable(obj) or (built_already and not isinstance(obj, type)):
        return obj
    if _takes_context(obj):
        _check_factory_signature(obj, where)
    try:
        return obj(context) if _takes_context(obj) else obj()
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{where}: building {obj!r} failed: {type(err).__name__}: {err}") from err


def spec_from(entry: str | Mapping[str, Any] | ModelSpec, where: str = "models", base: Path | None = None) -> ModelSpec:
    """A :class:`ModelSpec` from a config entry: a name, a ``module:attr`` string (a kernel
    or a model, told apart by what it names; the model is named ``attr``), or a table
    of spec keys. Relative ``.py`` paths are made absolute against ``base``."""
    if isinstance(entry, ModelSpec):
        return entry
    if isinstance(entry, str):
        if not plugins.is_reference(entry):
            try:
                return ModelSpec(entry)
            except InputError as err:  # say which config key held the name
                raise InputError(f"{where}: {err}") from None
        entry = plugins.resolve_path(entry, base) if base is not None else entry
        obj = plugins.load_reference(entry, where)
        attr = entry.rsplit(":", 1)[1]
        is_kernel = isinstance(obj, Kernel) or (isinstance(obj, type) and issubclass(obj, Kernel))
        return ModelSpec(attr, kernel=entry) if is_kernel else ModelSpec(attr, model=entry)
    if not isinstance(entry, Mapping):
        raise InputError(f"{where}: a model is a name, a 'module:attr' string or a table, got {entry!r}")
    bad = sorted(set(entry) - set(SPEC_KEYS))
    if bad:
        raise InputError(f"{where}: unknown key(s) {bad}; known: {sorted(SPEC_KEYS)}")
    fields = {k: entry[k] for k in ("name", "kernel", "model", "baseline") if k in entry}
    for key in ("kernel", "model", "optimizer"):
        if key in entry and not isinstance(entry[key], str):
            raise InputError(f"{where}.{key} must be a string, got {entry[key]!r}")
        if key in fields and base is not None:
            fields[key] = plugins.resolve_path(fields[key], base)
    if "embeddings" in entry:
        if not isinstance(entry["embeddings"], (list, tuple)) or not all(
            isinstance(e, str) for e in entry["embeddings"]
        ):
            raise InputError(f"{where}.embeddings must be a list of embedding names, got {entry['embeddings']!r}")
        fields["embeddings"] = tuple(entry["embeddings"])
    options = {k: entry[k] for k in GP_OPTIONS if k in entry}
    if isinstance(options.get("optimizer"), str) and base is not None:
        options["optimizer"] = plugins.resolve_path(options["optimizer"], base)
    options = tuple(options.items())
    return ModelSpec(options=options, **fields)


def check_model_names(names: Sequence[str]) -> tuple[str, ...]:
    """Built-in names, validated: InputError naming any unknown one and listing the known."""
    unknown = [n for n in names if n not in BUILTINS]
    if unknown:
        raise InputError(f"unknown model(s) {unknown}; known: {sorted(BUILTINS)}")
    return tuple(names)


def build_model(name: str, *, blocks: Blocks = (), ctrl=None, seed: int = 0) -> Model:
    """The built-in model called ``name`` for an embedding with ``blocks`` and a screen with ``ctrl``."""
    check_model_names([name])
    return ModelSpec(name).build(BuildContext(blocks=blocks, ctrl=ctrl, seed=seed))

"""``module:attr`` references to a user's own code: a kernel, a model, an optimiser.

``attr`` is looked up in ``module``, which is either an importable module name
(``my_lab.kernels``) or a path to a ``.py`` file (``experiments/projected_kernel.py``,
relative paths from the current folder or, in a config, from the config's
folder). A file is imported once per process under a name derived from its
path, so worker processes resolve the same reference to the same code.

Every failure is an :class:`~gpllm.errors.InputError` naming the config key
(``where``) and the reference: a module that does not import, or an attribute
that is missing.

A run's identity includes the code it runs: :func:`code_fingerprint` gives the
sha256 of the file behind each reference (the ``.py`` file, or an importable
module's own file), which goes into the run folder's ``run.json``, so that a
plug-in edited between a kill and a resume is refused (:func:`changed_code`)
rather than mixing results of two versions of it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gpllm.errors import InputError


def is_reference(text: Any) -> bool:
    """Whether ``text`` looks like ``module:attr`` (a built-in name never has a colon)."""
    return isinstance(text, str) and ":" in text and not text.startswith(":") and not text.endswith(":")


def split_reference(text: str, where: str) -> tuple[str, str]:
    """(module, attr) of ``module:attr``; the last colon splits (Windows drive letters)."""
    if not is_reference(text):
        raise InputError(f"{where}: {text!r} is not a 'module:attr' reference (e.g. 'my_kernels.py:MyKernel')")
    module, attr = text.rsplit(":", 1)
    return module, attr


def _import_file(path: Path, where: str):
    resolved = path.resolve()
    name = f"gpllm_plugin_{resolved.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    if not resolved.is_file():
        raise InputError(f"{where}: no such file {path}")
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise InputError(f"{where}: importing {path} failed: {type(err).__name__}: {err}") from err
    return module


def _file_path(module_name: str, base: Path | None) -> Path | None:
    """The ``.py`` file a reference's module part names, or None for an importable module name."""
    if not (module_name.endswith(".py") or "/" in module_name or "\\" in module_name):
        return None
    path = Path(module_name)
    return base / path if base is not None and not path.is_absolute() else path


def load_reference(text: str, where: str, base: Path | None = None) -> Any:
    """The object ``module:attr`` names; a ``.py`` path is relative to ``base`` if given."""
    module_name, attr = split_reference(text, where)
    path = _file_path(module_name, base)
    if path is not None:
        module = _import_file(path, where)
    else:
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # ImportError, or the module's own error while importing
            raise InputError(f"{where}: cannot import module {module_name!r} ({type(err).__name__}: {err})") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))
            raise InputError(f"{where}: {module_name!r} has no attribute {attr!r}; it defines {public}")
        obj = getattr(obj, part)
    return obj


def resolve_path(text: str, base: Path) -> str:
    """``text`` with a relative ``.py`` module path made absolute against ``base`` (a config's folder)."""
    if not is_reference(text):
        return text
    module, attr = text.rsplit(":", 1)
    if (module.endswith(".py") or "/" in module) and not Path(module).is_absolute():
        return f"{(base / module).resolve()}:{attr}"
    return text


def code_file(text: str, where: str, base: Path | None = None) -> Path | None:
    """The source file the reference ``text`` runs: its ``.py`` file, or the file of the
    importable module it names (None for a built-in name or a module with no source file)."""
    if not is_reference(text):
        return None
    module_name, _ = split_reference(text, where)
    path = _file_path(module_name, base)
    if path is None:
        load_reference(text, where, base)  # imported, so its file is known (and a bad name fails here)
        origin = getattr(sys.modules.get(module_name), "__file__", None)
        path = Path(origin) if origin else None
    return path.resolve() if path is not None and path.is_file() else None


def code_fingerprint(references: Iterable[str | None], where: str, base: Path | None = None) -> dict[str, str]:
    """{source file: sha256 of its bytes} for the code behind ``references`` (built-in
    names and None contribute nothing): what a run folder records as the code it ran."""
    out = {}
    for text in references:
        path = code_file(text, where, base) if text else None
        if path is not None:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def changed_code(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """The files whose code differs between a run's record and now (edited, added or gone)."""
    return sorted(f for f in {*recorded, *now} if recorded.get(f) != now.get(f))

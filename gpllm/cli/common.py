"""What every ``gpllm`` subcommand shares: one way to fail, and output checks made before any work."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from gpllm.errors import InputError


def fail(err: Exception) -> typer.Exit:
    """A one-line error on stderr and exit code 1, not a traceback."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=1)


def _probe(folder: Path, option: str, what: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".gpllm-probe-"):
            pass
    except FileExistsError:
        raise InputError(f"{option} {what}: {folder} exists and is not a folder") from None
    except NotADirectoryError:
        raise InputError(f"{option} {what}: a part of {folder} is a file, not a folder") from None
    except OSError as err:
        raise InputError(f"{option} {what}: cannot write in {folder} ({err.strerror or err})") from None


def writable_file(path: Path, option: str) -> Path:
    """``path`` once it is sure a file can be written there (its folder exists or is made,
    takes files, and ``path`` is not a folder): checked before any work, so none is lost."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name")
    _probe(path.parent, option, path)
    return path


def writable_folder(path: Path, option: str) -> Path:
    """``path`` once it is sure it is (or can be made) a folder that takes files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file; give a folder")
    _probe(path, option, path)
    return path

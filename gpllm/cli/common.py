"""What every ``gpllm`` subcommand shares: one way to fail, and output checks made before any work."""

from __future__ import annotations

import inspect
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import typer

from gpllm.errors import InputError

#: Process set-up :func:`gpllm.cli.main` leaves to the first command that computes (see :func:`computing`).
_DEFERRED: list[Callable[[], object]] = []


def defer_until_computing(*steps: Callable[[], object]) -> None:
    """Run ``steps`` only once a command is about to compute (:func:`computing`): loading JAX
    takes seconds, which `--help`, `data list` and a mistyped argument should not wait for."""
    _DEFERRED.extend(steps)


def computing() -> None:
    """The deferred set-up (float64, the compilation cache), once, before a command's real work.
    A no-op when nothing was deferred (commands invoked in-process, as in tests)."""
    while _DEFERRED:
        _DEFERRED.pop(0)()


#: Every command's ``--debug`` (:func:`fail` takes its value).
DEBUG = typer.Option(
    False,
    "--debug",
    help="On a failure, print the full traceback first (a run also keeps a model's or plug-in's own in its "
    "folder's errors.log).",
)

#: Folders this process's output checks created (:func:`writable_file`, :func:`writable_folder`),
#: shallowest first: :func:`fail` removes those still empty, so a failed command leaves none behind.
_CREATED: list[Path] = []


def fail(err: Exception, debug: bool | None = None) -> typer.Exit:
    """A one-line error on stderr and exit code 1, not a traceback; output folders the
    command created and left empty are removed (a folder that existed before stays).

    ``debug`` (a command's ``--debug``; None for a command without one): the full traceback
    first, the one a worker or a writer kept (the error's ``details``, also in the run folder's
    errors.log) or this one's; where it is False and a traceback was kept, the line says so.
    """
    remove_empty_created()
    kept = getattr(err, "details", "")
    if debug:
        typer.echo((kept or "".join(traceback.format_exception(err))).rstrip(), err=True)
    typer.echo(f"error: {err}" + (" (--debug prints the traceback)" if kept and debug is False else ""), err=True)
    return typer.Exit(code=1)


def writing_outputs() -> None:
    """From here on the command writes its outputs: the folders its checks created are its
    output folders, kept by :func:`fail` even if a write then fails (data synth's OUT_DIR)."""
    _CREATED.clear()


def remove_empty_created() -> None:
    """Remove the folders the output checks created that are still empty, deepest first."""
    while _CREATED:
        try:
            _CREATED.pop().rmdir()
        except OSError:  # holds something now, or is gone
            pass


def one_line_paragraphs(text: str | None) -> str | None:
    """``text`` with each blank-line-separated paragraph joined onto one line.

    Typer's rich help keeps a docstring's source line breaks, so a sentence that
    continues on the next source line breaks mid-line on screen; one line per
    paragraph lets rich wrap it at the terminal's width."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def reflow_help(app: typer.Typer) -> None:
    """Give every command of ``app`` and of its sub-apps :func:`one_line_paragraphs` help
    (from ``help=`` or the docstring), before the click commands are built."""
    for info in app.registered_commands:
        info.help = one_line_paragraphs(info.help or inspect.getdoc(info.callback))
    for group in app.registered_groups:
        group.typer_instance.info.help = one_line_paragraphs(group.typer_instance.info.help)
        reflow_help(group.typer_instance)


def _probe(folder: Path, option: str, what: Path) -> None:
    missing = [f for f in (*reversed(folder.parents), folder) if not f.exists() and not f.is_symlink()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _CREATED.extend(missing)
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


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)  # hard links and symbolic links too
    return a.resolve() == b.resolve()


def not_an_input(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """InputError if an output path is one of the command's input files or another of its
    outputs (by path, or by inode through links): writing it would destroy what the command reads."""
    named = list(outputs.items())
    for i, (out_option, out) in enumerate(named):
        others = {**dict(named[i + 1 :]), **inputs}
        for option, given in others.items():
            if out is not None and given is not None and _same_file(Path(out), Path(given)):
                what = "another output" if option in outputs else "an input"
                raise InputError(
                    f"{out_option} {out} is also {option}: writing it would overwrite {what}; give another file"
                )

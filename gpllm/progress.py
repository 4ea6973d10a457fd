"""One kind of progress bar for long work: rich's.

:func:`bar` is a passing bar on stderr, gone when the work is done; :func:`run_bar`
stays on screen over a resumable run and ends saying "done", or how to resume.

Libraries that draw their own tqdm bars (transformers, huggingface_hub) are silenced
around gpllm's calls into them (:func:`library_bars_off`), so a run shows rich bars only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def bar(label: str, total: int | None = None, *, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """A transient rich bar; yields ``update(done, total=None)``. A no-op when not ``enabled``."""
    if not enabled:
        yield lambda done, total=None: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)

        def update(done: int, total: int | None = None) -> None:
            progress.update(task, completed=done, **({} if total is None else {"total": total}))

        yield update


#: What a run's bar reads when an error or Ctrl-C ends the run.
INTERRUPTED = "interrupted: run the same command again to resume"


@contextmanager
def run_bar(
    label: str, total: int, *, done: int = 0, width: int = 56, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """A bar over a resumable run's ``total`` units, ``done`` of them already stored; yields
    ``update(description=None, advance=0)``. A no-op when not ``enabled``."""
    if not enabled:
        yield lambda description=None, advance=0: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"{{task.description:<{width}}}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(label, total=total, completed=done)

        def update(description: str | None = None, advance: int = 0) -> None:
            progress.update(task, advance=advance, **({"description": description} if description else {}))

        try:
            yield update
        except BaseException:
            progress.update(task, description=INTERRUPTED)
            raise
        progress.update(task, description="done")


@contextmanager
def library_bars_off() -> Iterator[None]:
    """transformers' and huggingface_hub's tqdm bars off inside the block, as they were after it."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # without transformers nothing draws such bars
        yield
        return
    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # also turns off huggingface_hub's
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()

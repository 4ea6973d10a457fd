"""One kind of progress bar for long work: rich's, on stderr, gone when the work is done.

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

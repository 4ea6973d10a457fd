"""What the docs tests share: the repository's pages, and running Python in a clean process.

Docs code runs in a fresh interpreter in a temporary folder, as a reader would run it:
``gpllm.use_float64()`` in one page must not leak into another, nor into the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.py"))
#: Pages whose ```python blocks are executed: the README and every hand-written page.
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]

_SKIP = re.compile(r"<!--\s*skip\b[^>]*-->\s*$")


def fenced_blocks(page: Path, language: str, skip_marked: bool = False) -> list[tuple[int, str]]:
    """(first line number, text) of each ```LANGUAGE block of ``page``; with ``skip_marked``,
    leave out a block with a ``<!-- skip: why -->`` comment on the line before it."""
    text = page.read_text()
    blocks = []
    for match in re.finditer(rf"^```{language}[^\n]*\n(.*?)^```", text, re.S | re.M):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not (skip_marked and _SKIP.search(before)):
            blocks.append((text.count("\n", 0, match.start(1)) + 1, match.group(1)))
    return blocks


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """The ```python blocks of ``page`` that are not marked ``<!-- skip: why -->``."""
    return fenced_blocks(page, "python", skip_marked=True)


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def run_python(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with the tutorials' small sizes, no display, and the test
    session's compilation cache (tests/conftest.py), else one of its own: never the user's."""
    env = {
        "GPLLM_JAX_CACHE": str(cwd / "jax-cache"),
        **os.environ,
        "GPLLM_TUTORIAL_SMALL": "1",
        "MPLBACKEND": "Agg",
        "COLUMNS": "120",
    }
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def tail(result: subprocess.CompletedProcess, chars: int = 6000) -> str:
    return (result.stdout + result.stderr)[-chars:]

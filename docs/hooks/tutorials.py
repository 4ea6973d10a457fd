"""MkDocs hook: each ``docs/tutorials/NAME.py`` (jupytext percent format) becomes the page
``tutorials/NAME.md``; the ``.py`` itself is kept as a download beside it.

Markdown cells stay Markdown, code cells become ``python`` blocks. Nothing is executed here:
``tests/docs/test_tutorials.py`` runs every tutorial.
"""

from __future__ import annotations

import jupytext
from mkdocs.structure.files import File, Files


def _markdown(nb, source_name: str) -> str:
    parts = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source)
        elif cell.source.strip():
            parts.append(f"```python\n{cell.source}\n```")
    parts.append(f"*This page is generated from [`{source_name}`]({source_name}); run it with `python {source_name}`.*")
    return "\n\n".join(parts) + "\n"


def on_files(files: Files, config) -> Files:
    for file in list(files):
        if file.src_uri.startswith("tutorials/") and file.src_uri.endswith(".py"):
            nb = jupytext.read(file.abs_src_path, fmt="py:percent")
            name = file.src_uri.rsplit("/", 1)[-1]
            files.append(File.generated(config, file.src_uri[:-3] + ".md", content=_markdown(nb, name)))
    return files

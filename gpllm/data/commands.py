"""``gpllm data ...`` and ``gpllm embed-text`` commands (owned by the data layer)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Fetch, list and inspect data sources.", no_args_is_help=True)


def embed_text() -> None:
    """Embed gene descriptions locally with an open sentence-embedding model."""
    raise typer.Exit(code=2)

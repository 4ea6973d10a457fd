"""What every ``gpllm`` subcommand shares: one way to fail."""

from __future__ import annotations

import typer


def fail(err: Exception) -> typer.Exit:
    """A one-line error on stderr and exit code 1, not a traceback."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=1)

"""The ``gpllm`` command line: one Typer app, one sub-app per layer.

Heavy modules (JAX programs, scanpy) are imported inside the commands so that
``gpllm --help`` stays instant.
"""

from __future__ import annotations

import typer

from gpllm.data.commands import app as data_app
from gpllm.data.commands import embed_text

app = typer.Typer(
    name="gpllm",
    help="Multi-output Gaussian processes on LLM gene embeddings (Maertens et al. 2024).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks (speed and memory).", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.command("embed-text")(embed_text)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

"""The ``gpllm`` command line: one Typer app, one sub-app per layer.

Heavy modules (JAX programs, scanpy) are imported inside the commands so that
``gpllm --help`` stays instant.
"""

from __future__ import annotations

import typer

from gpllm.cli.active import active_command
from gpllm.cli.common import reflow_help
from gpllm.cli.data import app as data_app
from gpllm.cli.data import embed_text
from gpllm.cli.evaluate import evaluate_command
from gpllm.cli.models import fit_command, predict_command
from gpllm.cli.reproduce import reproduce_command

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
app.command("fit")(fit_command)
app.command("predict")(predict_command)
app.command("evaluate")(evaluate_command)
app.command("reproduce")(reproduce_command)
app.command("active")(active_command)


#: ``gpllm bench NAME`` runs ``benchmarks/NAME.py`` (a source checkout; options pass through).
BENCHMARKS = {
    "lml": "LML value+gradient vs scikit-learn, GPJax, tinygp, NumPy (benchmarks/lml.py). Options pass "
    "through, e.g. `gpllm bench lml --quick`; needs the 'bench' extra.",
    "pseudobulk": "Chunked pseudobulk of a 500,000 x 8,000 h5ad from disk: time and peak memory "
    "(benchmarks/pseudobulk.py), e.g. `gpllm bench pseudobulk --quick` or `--workdir DIR`.",
    "sweep": "Wall time and peak memory of the default `gpllm reproduce` (benchmarks/sweep.py).",
    "active": "Wall time, peak memory and the measurements-to-90%/95% table of the default "
    "`gpllm active` (benchmarks/active.py).",
    "combos": "Wall time, peak memory and the seen-0/1/2 table of the synthetic two-gene run (benchmarks/combos.py).",
    "dask_cluster": "One small `gpllm reproduce` locally and on a 2-worker Dask LocalCluster: both wall "
    "times and peak memories, and whether the tables agree (benchmarks/dask_cluster.py).",
}


def _benchmark_command(name: str):
    def command(ctx: typer.Context) -> None:
        _run_benchmark(name, ctx.args)

    command.__doc__ = BENCHMARKS[name]
    return command


for _name in BENCHMARKS:
    bench_app.command(_name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        _benchmark_command(_name)
    )


def _run_benchmark(name: str, args: list[str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if not (root / "benchmarks" / f"{name}.py").is_file():
        typer.echo(
            f"benchmarks/{name}.py not found beside {root / 'gpllm'}: benchmarks ship "
            "with the source checkout, not the wheel",
            err=True,
        )
        raise typer.Exit(code=2)
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=root)
    raise typer.Exit(code=done.returncode)


reflow_help(app)


def main() -> None:
    """Console-script entry point: OpenBLAS's spin limited (:mod:`gpllm.blas`); float64 and
    compiled JAX programs kept between runs (:mod:`gpllm.compilation_cache`) once a command
    computes (:func:`gpllm.cli.common.computing`), so help and argument errors come at once."""
    from gpllm import compilation_cache, use_float64
    from gpllm.blas import limit_openblas_spin
    from gpllm.cli.common import defer_until_computing

    limit_openblas_spin()
    defer_until_computing(use_float64, compilation_cache.enable)
    app()


if __name__ == "__main__":
    main()

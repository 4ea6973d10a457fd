"""``gpllm data ...`` and ``gpllm embed-text`` commands (owned by the data layer)."""

from __future__ import annotations

from pathlib import Path

import typer

from gpllm.cli.common import computing, fail, not_an_input, writable_folder, writing_outputs
from gpllm.data.embeddings.text import DEFAULT_MODEL as DEFAULT_TEXT_MODEL

app = typer.Typer(help="Fetch, list and inspect data sources.", no_args_is_help=True)


def embed_text(
    input: Path = typer.Option(  # noqa: A002  (the option's name)
        ..., "--input", "-i", help="JSON object gene symbol -> description (GenePT's summary layout)."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Where to write: .pickle (GenePT-style dict) or .parquet/.csv table."
    ),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1, help="Descriptions per model call."),
    model: str = typer.Option(
        DEFAULT_TEXT_MODEL, "--model", "-m", help="A bundled model name or a local sentence-transformers folder."
    ),
) -> None:
    """Embed gene descriptions locally with an open sentence-embedding model (no API key)."""
    computing()
    from gpllm.data.embeddings.files import write_vectors
    from gpllm.data.embeddings.text import embed_descriptions, read_descriptions
    from gpllm.errors import GPLLMError
    from gpllm.progress import bar

    try:
        not_an_input({"--output": output}, {"--input": input})
        descriptions = read_descriptions(input)
        with bar("embedding", len(descriptions)) as update:
            vectors = embed_descriptions(descriptions, model=model, batch_size=batch_size, on_batch=update)
        write_vectors(output, vectors)
    except GPLLMError as err:
        raise fail(err) from err
    typer.echo(f"wrote {len(vectors)} {vectors.dim}-d vectors ({model}) to {output}")


# ----------------------------------------------------------- data sources (list, fetch, synth)
_SOURCES_FILE = typer.Option(
    None, "--sources", envvar="GPLLM_SOURCES", help="JSON list of extra entries (same name replaces a built-in one)."
)


def _human(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


@app.command("list")
def list_sources(
    sources_file: Path | None = _SOURCES_FILE,
    dest: Path | None = typer.Option(None, "--dest", help="Folder to look in (default: the cache, $GPLLM_DATA)."),
) -> None:
    """The known remote files, one entry each: name, size, whether cached, which checksum is
    known, then the description, indented and wrapped at the terminal's width."""
    import shutil
    import textwrap

    from gpllm.data.sources.registry import cache_dir, is_cached, recorded_checksum, registry
    from gpllm.errors import GPLLMError

    try:
        reg = registry(sources_file)
        where = dest if dest is not None else cache_dir()
    except GPLLMError as err:
        raise fail(err) from err
    rows = []
    for s in reg.values():
        if s.verified:
            known = "+".join(c.split(":")[0] for c in s.checksums)
        elif recorded_checksum(where / s.filename):
            known = "recorded sha256"
        else:
            known = "none (opt-in)"
        rows.append((s.name, _human(s.size), f"cached: {'yes' if is_cached(s, where) else 'no'}", f"checksum: {known}"))
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    width = shutil.get_terminal_size().columns
    lines = [f"gpllm data sources (cache: {where})"]
    for row, s in zip(rows, reg.values()):
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
        lines += textwrap.wrap(s.description, width - 1, initial_indent="      ", subsequent_indent="      ")
    typer.echo("\n".join(lines))


@app.command("fetch")
def fetch_source(
    name: str = typer.Argument(..., help="Registry name, see `gpllm data list`."),
    dest: Path | None = typer.Option(None, "--dest", help="Folder to download into (default: the cache, $GPLLM_DATA)."),
    allow_unverified: bool = typer.Option(
        False, "--allow-unverified", help="Fetch an entry with no known checksum; its sha256 is printed and recorded."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    sources_file: Path | None = _SOURCES_FILE,
) -> None:
    """Download a registered file, verify it, and print its local path (stdout)."""
    from gpllm.data.sources.registry import fetch, registry
    from gpllm.errors import GPLLMError

    try:
        if dest is not None:
            writable_folder(dest, "--dest")
        got = fetch(name, dest, allow_unverified=allow_unverified, progress=not quiet, sources=registry(sources_file))
    except GPLLMError as err:
        raise fail(err) from err
    how = "downloaded" if got.downloaded else "cached"
    if got.checked:
        typer.echo(f"{how}, verified by {'+'.join(got.checked)}: {got.path}", err=True)
    else:
        typer.echo(
            f"{how} UNVERIFIED (no checksum known): {got.sha256} recorded in {got.path}.sha256; "
            "later fetches are checked against it",
            err=True,
        )
    typer.echo(str(got.path))


@app.command("synth")
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write into (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic draw."),
    cells: bool = typer.Option(False, "--cells", help="Also write Replogle-style single cells."),
    cells_per_pert: int = typer.Option(20, "--cells-per-pert", min=1, help="Cells sampled per perturbation."),
    n_perts: int | None = typer.Option(None, "--n-perts", min=2, help="Perturbations (default: the real screen's)."),
    n_genes: int | None = typer.Option(None, "--n-genes", min=20, help="Measured genes (default 2000)."),
) -> None:
    """Write a synthetic screen in the real files' formats (Replogle h5ad, GenePT pickle, UniProt h5)."""
    computing()
    from gpllm.data.synthetic.files import write_files
    from gpllm.data.synthetic.screens import SyntheticConfig, check_draw_fits, make_screens
    from gpllm.errors import GPLLMError

    sizes = {k: v for k, v in (("n_perts", n_perts), ("n_genes", n_genes)) if v is not None}
    try:
        check_draw_fits(SyntheticConfig(**sizes))  # before OUT_DIR is made: a refusal leaves nothing behind
        writable_folder(out_dir, "OUT_DIR")
        writing_outputs()
        paths = write_files(make_screens(seed, **sizes), out_dir, cells=cells, cells_per_pert=cells_per_pert)
    except GPLLMError as err:
        raise fail(err) from err
    for key, path in paths.items():
        typer.echo(f"{key}\t{path}")


@app.command("process")
def process_screen(
    screen: Path = typer.Argument(..., help="A Perturb-seq screen h5ad: single cells or pseudobulk rows."),
    out: Path = typer.Option(..., "--out", "-o", help="The processed screen to write (.h5ad), what `gpllm fit` reads."),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="How obs names conditions: replogle_bulk, replogle_cells, norman19, gears or norman_scperturb "
        "(default: obs['gene'] names the target, 'non-targeting' the controls).",
    ),
    kind: str = typer.Option("auto", "--kind", help="'cells', 'bulk' or 'auto' (detected)."),
    n_hvg: int = typer.Option(2000, "--n-hvg", min=1, help="Highly variable genes kept."),
    hvg_flavor: str = typer.Option("seurat", "--hvg-flavor", help="scanpy's HVG flavor."),
    n_de: int = typer.Option(20, "--n-de", min=1, help="Top DE genes per perturbation."),
    de_method: str = typer.Option("auto", "--de-method", help="'t-test' (cells), 'abs-delta', or 'auto'."),
    min_cells: int = typer.Option(2, "--min-cells", min=1, help="Cells a perturbation needs to be kept."),
    combos_out: Path | None = typer.Option(None, "--combos-out", help="Also write two-gene conditions (A+B) here."),
) -> None:
    """Turn a raw screen into the processed screen `gpllm fit` and `gpllm evaluate --truth` read:
    mean log-normalised expression per perturbation over the HVGs, the control mean, top DE genes."""
    computing()
    from gpllm.cli.common import writable_file
    from gpllm.data.screens.labels import preset as preset_spec
    from gpllm.data.screens.perturbseq import read_screen
    from gpllm.errors import GPLLMError
    from gpllm.progress import bar

    try:
        spec = preset_spec(preset, "--preset")
        writable_file(out, "--out")
        if combos_out is not None:
            writable_file(combos_out, "--combos-out")
        not_an_input({"--out": out, "--combos-out": combos_out}, {"SCREEN": screen})
        with bar("reading cells") as update:
            processed = read_screen(
                screen,
                spec,
                kind=kind,
                n_hvg=n_hvg,
                hvg_flavor=hvg_flavor,
                n_de=n_de,
                de_method=de_method,
                min_cells=min_cells,
                on_chunk=update,
            )
        singles = processed.singles
        singles.save(out)
        if combos_out is not None and processed.combos is not None:
            processed.combos.save(combos_out)
    except GPLLMError as err:
        raise fail(err) from err
    typer.echo(f"{screen}: {singles.n_perts} single-gene perturbations x {singles.n_genes} genes -> {out}")
    if processed.combos is not None:
        where = f" -> {combos_out}" if combos_out is not None else " (set apart; --combos-out writes them)"
        typer.echo(f"{processed.combos.n_perts} two-gene conditions{where}")

"""At 80 columns (``COLUMNS=80``) the help and listings a newcomer reads first stay readable:
every preset named, descriptions not squeezed into a narrow column, no entry wrapped line
after line, and a ``[section]`` in brackets shown as typed."""

from __future__ import annotations

from typer.testing import CliRunner

from gpllm.cli import app
from gpllm.data.screens.labels import PRESETS

WIDTH = 80


def _run(*args: str, **env: str | None) -> str:
    done = CliRunner().invoke(app, list(args), env={"COLUMNS": str(WIDTH), **env}, terminal_width=WIDTH)
    assert done.exit_code == 0, done.output
    # every line fits, but a title naming a folder: a path is never broken
    assert all(len(line) <= WIDTH for line in done.stdout.splitlines() if "(cache: " not in line)
    return done.stdout


def _room(rendered: str, option: str, first_words: str) -> int:
    """Columns left to ``option``'s description (which starts with ``first_words``) in its row."""
    row = next(line for line in rendered.splitlines() if f" {option} " in line)
    return WIDTH - 2 - row.index(first_words)  # less the panel's right border and padding


def test_data_process_help_names_every_preset_and_the_default_gene_column():
    text = " ".join(_run("data", "process", "--help").replace("│", " ").split())
    preset_help = text[text.index("--preset") :]
    for name in PRESETS:
        assert name in preset_help, f"--preset's help lacks {name}"
    assert "obs['gene']" in preset_help  # what the default reads (labels.ObsSpec's pert_col)


def test_reproduce_help_leaves_its_descriptions_room():
    rendered = _run("reproduce", "--help")
    for option, first_words in [
        ("--config", "TOML config"),
        ("--workers", "Worker processes"),
        ("--executor", "Where the sweep"),
        ("--debug", "On a failure"),
    ]:
        room = _room(rendered, option, first_words)
        assert room >= 40, f"{option}'s description squeezed into {room} columns:\n{rendered}"


def test_active_help_leaves_its_descriptions_room_and_shows_the_section_name():
    rendered = _run("active", "--help")
    assert "[active]" in rendered  # rich markup would drop it
    assert _room(rendered, "--acquisitions", "Override the acquisitions") >= 40


def test_data_list_gives_each_source_a_line_and_its_wrapped_description(tmp_path):
    from gpllm.data.sources.registry import registry

    lines = _run("data", "list", GPLLM_DATA=str(tmp_path), GPLLM_SOURCES=None).splitlines()
    sources = registry(None)
    for source in sources.values():
        [row] = [line for line in lines if line.split()[:1] == [source.name]]
        assert "cached: no" in row and "checksum: " in row
    assert len(lines) <= 1 + 3 * len(sources)  # a title; per entry its line and a description of 1-2

"""`gpllm ... --help` reads cleanly at 80 and 120 columns: paragraphs wrap at the terminal's
width, never mid-line where the source docstring broke, and nothing is cut short."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from gpllm.cli import app
from gpllm.cli.common import one_line_paragraphs


def _command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    if hasattr(command, "commands"):  # a group (Typer may bundle its own click)
        for name, sub in command.commands.items():
            out += _command_paths(sub, (*path, name))
    return out


ROOT = typer.main.get_command(app)
PATHS = _command_paths(ROOT)


def _command(path: tuple[str, ...]):
    command = ROOT
    for name in path:
        command = command.commands[name]
    return command


def test_every_command_is_reached():
    names = {" ".join(p) for p in PATHS}
    assert {"data process", "evaluate", "reproduce", "fit", "predict", "embed-text", "bench sweep"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "gpllm")
def test_help_paragraphs_are_single_lines(path):
    help_text = _command(path).help or ""
    assert help_text.strip(), f"{' '.join(path)} has no help"
    for paragraph in help_text.split("\n\n"):
        assert "\n" not in paragraph, paragraph
    assert "``" not in help_text  # reST literals print as-is in a terminal


def test_one_line_paragraphs_keeps_paragraphs_and_joins_lines():
    doc = """First line
        goes on.

        Second paragraph,
        two lines.
    """
    assert one_line_paragraphs(doc) == "First line goes on.\n\nSecond paragraph, two lines."
    assert one_line_paragraphs(None) is None


def _description_lines(rendered: str) -> list[str]:
    """The prose between the usage line and the first panel."""
    lines = rendered.splitlines()
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
    stop = next((i for i, line in enumerate(lines) if line.lstrip().startswith("╭")), len(lines))
    return [line.rstrip() for line in lines[start:stop]]


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "gpllm")
def test_rendered_help_wraps_at_the_width_only(path, width):
    done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(width)}, terminal_width=width)
    assert done.exit_code == 0, done.output
    assert "…" not in done.output, "a help text was cut short"
    assert max(len(line) for line in done.output.splitlines()) <= width
    prose = _description_lines(done.output)
    for line, following in zip(prose, prose[1:]):
        if line.strip() and following.strip():
            # a break inside a paragraph is only allowed where the next word did not fit
            room = width - 2 - len(line)
            assert len(following.split()[0]) + 1 > room, f"broke early at {width} columns:\n{line}\n{following}"


def test_a_config_section_in_brackets_survives_rich_markup():
    from tests.cli.conftest import invoke

    result = invoke("active", "--help")
    assert "[active]" in result.stdout  # rich markup would drop it, leaving "data sections and ;"

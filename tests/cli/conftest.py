"""A small synthetic screen and its embeddings, written in the real file formats once per session."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from typer.testing import CliRunner

from gpllm.cli import app
from gpllm.data.embeddings.files import write_genept_pickle, write_vectors
from gpllm.data.synthetic.screens import make_screens

N_TRAIN = 60
K = 10


class Files(NamedTuple):
    """Paths of the written inputs and the names they hold."""

    screen: Path
    text: Path  # GenePT-style pickle
    sequence: Path  # parquet table
    train: Path  # the first N_TRAIN perturbations, one per line
    train_names: tuple[str, ...]
    test_names: tuple[str, ...]  # the other screen perturbations
    data: object  # the SyntheticScreens they came from

    def text_and_train(self) -> tuple:
        """The options ``--text TEXT --train TRAIN`` that ``gpllm fit`` and ``gpllm predict`` share."""
        return ("--text", self.text, "--train", self.train)


@pytest.fixture(scope="session")
def files(tmp_path_factory) -> Files:
    root = tmp_path_factory.mktemp("cli_inputs")
    syn = make_screens(0, n_perts=80, n_genes=60)
    screen = syn.screens["K562"]
    screen.save(root / "screen.h5ad")
    write_genept_pickle(root / "text.pickle", syn.vectors["text"])
    write_vectors(root / "sequence.parquet", syn.vectors["sequence"])
    train, test = screen.perts[:N_TRAIN], screen.perts[N_TRAIN:]
    (root / "train.txt").write_text("# training perturbations\n" + "\n".join(train) + "\n")
    return Files(
        root / "screen.h5ad", root / "text.pickle", root / "sequence.parquet", root / "train.txt", train, test, syn
    )


@pytest.fixture(scope="session")
def gp_run(files, tmp_path_factory):
    """`gpllm fit` (gp, text + sequence) then `gpllm predict` for the held-out perturbations."""
    out = tmp_path_factory.mktemp("gp_run")
    fit = ok(
        "fit",
        files.screen,
        "--text",
        files.text,
        "--sequence",
        files.sequence,
        "--train",
        files.train,
        "--k",
        K,
        "--out",
        out / "model.npz",
    )
    pred = ok("predict", out / "model.npz", "--genes", ",".join(files.test_names), "--out", out / "pred.h5ad")
    return out, fit.stdout, pred.stdout


def invoke(*args) -> object:
    """Run ``gpllm ARGS`` in-process; the result has exit_code, stdout, stderr."""
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args):
    """``invoke`` that must succeed, showing the output when it does not."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def fails(*args, naming: str):
    """``invoke`` that must fail with one ``error:`` line naming ``naming``, and no traceback
    (log lines, such as a coverage warning, may precede it)."""
    result = invoke(*args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert naming in errors[0], errors[0]
    return errors[0]

"""``gpllm fit`` and ``gpllm predict``: one model, from a saved screen and embedding files.

``fit`` trains on a screen (an h5ad from :meth:`PerturbationData.save`) and
writes a fitted-model .npz (:mod:`gpllm.models.fitted`); ``predict`` loads it
and writes predictions for new gene symbols as h5ad. ``predict --screen``
does both in one go, through the same code, so the results are identical.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gpllm.cli.common import DEBUG, computing, fail, not_an_input, writable_file

_TEXT = typer.Option(
    None, "--text", help="Text embedding: GenePT-style .pickle, or a .csv/.tsv/.parquet table (gene column first)."
)
_SEQUENCE = typer.Option(
    None, "--sequence", help="Sequence embedding: UniProt per-protein .h5 (with --idmapping), or a table/.pickle."
)
_IDMAPPING = typer.Option(None, "--idmapping", help="UniProt ID mapping (idmapping.dat or a TSV) for a --sequence .h5.")
_MODEL = typer.Option(
    "gp",
    "--model",
    "-m",
    help="A built-in model (gp, gp_blocks, knn_k1, knn_ktuned, ridge, linear, random_perturbation, nonctrl_mean, "
    "control), or 'FILE.py:ATTR' / 'module:attr' naming your own kernel (a GP on it) or model.",
)
_TRAIN = typer.Option(
    None,
    "--train",
    help="Training perturbations: a file (one per line) or a comma-separated list (default: all of the screen's).",
)
_K = typer.Option(50, "--k", min=1, help="Principal components kept per embedding source.")
_SEED = typer.Option(0, "--seed", help="Seed of models that draw (random_perturbation).")


def name_list(value: str, what: str) -> tuple[str, ...]:
    """Names from ``value``: an existing file (one per line; blanks and '#' lines skipped)
    or a comma-separated list. InputError if none are left."""
    from gpllm.errors import InputError

    path = Path(value)
    if path.is_file():
        lines = (s.strip() for s in path.read_text().splitlines())
        names = tuple(s for s in lines if s and not s.startswith("#"))
    else:
        names = tuple(s.strip() for s in value.split(",") if s.strip())
    if not names:
        raise InputError(f"{what}: no names in {value!r}")
    return names


def _sources(text: Path | None, sequence: Path | None, idmapping: Path | None, genes) -> dict:
    """{'text': GeneVectors, 'sequence': GeneVectors} for the files given (at least one)."""
    from gpllm.data.embeddings.files import load_prott5_h5, load_vectors
    from gpllm.errors import InputError

    if text is None and sequence is None:
        raise InputError("give an embedding: --text FILE and/or --sequence FILE")
    if idmapping is not None and sequence is None:
        raise InputError("--idmapping maps --sequence .h5 accessions; no --sequence was given")
    out = {}
    if text is not None:
        out["text"] = load_vectors(text)
    if sequence is not None:
        is_h5 = sequence.name.lower().endswith((".h5", ".hdf5"))
        out["sequence"] = load_prott5_h5(sequence, idmapping, genes=list(genes)) if is_h5 else load_vectors(sequence)
    return out


def _files(text: Path | None, sequence: Path | None, idmapping: Path | None) -> dict[str, str]:
    """The embedding files as provenance, absolute, so ``predict`` can reopen them."""
    given = {"text": text, "sequence": sequence, "idmapping": idmapping}
    return {k: str(v.resolve()) for k, v in given.items() if v is not None}


def _train(screen_path: Path, model: str, text, sequence, idmapping, train: str | None, k: int, seed: int):
    from gpllm.data.screens.perturbation_data import PerturbationData
    from gpllm.models import fitted

    screen = PerturbationData.load(screen_path)
    perts = name_list(train, "--train") if train is not None else screen.perts
    sources = _sources(text, sequence, idmapping, perts)
    prov = {"screen": str(screen_path.resolve()), "embedding_files": _files(text, sequence, idmapping)}
    return screen, fitted.train(model, screen, sources, perts, k=k, seed=seed, provenance=prov)


def _inputs(screen, text, sequence, idmapping, train) -> dict[str, Path | None]:
    """The files a fit reads, by option (a list given inline is no file)."""
    return {
        "--screen": screen,
        "--text": text,
        "--sequence": sequence,
        "--idmapping": idmapping,
        "--train": train if train is not None and Path(train).is_file() else None,
    }


def _model_code(model: str):
    """Inside: an exception from outside gpllm's checks (a plug-in model's or kernel's own
    code) as one line naming the model; ``--debug`` prints its traceback."""
    from gpllm.errors import GPLLMError
    from gpllm.evaluate.runner.workers import named_failures

    return named_failures(lambda err: "" if isinstance(err, GPLLMError) else f"model {model!r}")


def _summary(fit) -> str:
    dropped = fit.provenance["n_dropped_no_embedding"]
    note = f", {dropped} training perturbation(s) left out for lack of an embedding" if dropped else ""
    return (
        f"fitted {fit.model} on {len(fit.perts)} perturbations x {len(fit.genes)} genes "
        f"({fit.embedding}, Q={fit.Z.shape[1]}){note}"
    )


def fit_command(
    screen: Path = typer.Argument(..., help="Screen h5ad written by PerturbationData.save."),
    out: Path = typer.Option(..., "--out", "-o", help="Fitted-model file to write (.npz)."),
    text: Path | None = _TEXT,
    sequence: Path | None = _SEQUENCE,
    idmapping: Path | None = _IDMAPPING,
    model: str = _MODEL,
    train: str | None = _TRAIN,
    k: int = _K,
    seed: int = _SEED,
    debug: bool = DEBUG,
) -> None:
    """Fit one model on a screen and save it for `gpllm predict`."""
    computing()
    from gpllm.errors import GPLLMError
    from gpllm.models import fitted

    try:
        writable_file(out, "--out")  # before the fit, so that none is lost
        not_an_input({"--out": out}, _inputs(screen, text, sequence, idmapping, train))
        with _model_code(model):
            _, fit = _train(screen, model, text, sequence, idmapping, train, k, seed)
        fitted.save(fit, out)
    except GPLLMError as err:
        raise fail(err, debug) from err
    typer.echo(f"{_summary(fit)}; wrote {out}")


def predict_command(
    model_file: Path | None = typer.Argument(None, help="Fitted-model file from `gpllm fit` (or use --screen)."),
    genes: str | None = typer.Option(
        None,
        "--genes",
        "--test",
        help="Genes to predict a knockout of: a file (one per line) or a comma-separated list.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions h5ad to write."),
    text: Path | None = _TEXT,
    sequence: Path | None = _SEQUENCE,
    idmapping: Path | None = _IDMAPPING,
    screen: Path | None = typer.Option(
        None, "--screen", help="Fit on this screen first instead of loading a model file."
    ),
    model: str = _MODEL,
    train: str | None = _TRAIN,
    k: int = _K,
    seed: int = _SEED,
    debug: bool = DEBUG,
) -> None:
    """Predict expression profiles for gene knockouts; embeddings default to those `fit` used.

    With --screen (and no model file) the model is fitted first; then --genes
    defaults to the screen's perturbations outside --train.
    """
    computing()
    from gpllm.atomic import write_h5ad
    from gpllm.errors import GPLLMError, InputError
    from gpllm.models import fitted

    try:
        writable_file(out, "--out")
        not_an_input(
            {"--out": out},
            {"MODEL_FILE": model_file, "--genes": genes, **_inputs(screen, text, sequence, idmapping, train)},
        )
        if (model_file is None) == (screen is None):
            raise InputError("give either a fitted-model file or --screen (to fit first), not both or neither")
        if screen is not None:
            with _model_code(model):
                data, fit = _train(screen, model, text, sequence, idmapping, train, k, seed)
            if genes is None and train is None:
                raise InputError("--screen without --train trains on every perturbation: say which --genes to predict")
            if genes is not None:
                wanted = name_list(genes, "--genes")
            else:
                trained = set(name_list(train, "--train"))
                wanted = tuple(p for p in data.perts if p not in trained)
        else:
            fit = fitted.load(model_file)
            if genes is None:
                raise InputError("say which --genes to predict")
            wanted = name_list(genes, "--genes")
            stored = {key: Path(v) for key, v in fit.provenance.get("embedding_files", {}).items()}
            if text is None and sequence is None:  # the files the model was fitted with
                text, sequence, idmapping = stored.get("text"), stored.get("sequence"), stored.get("idmapping")
        with _model_code(fit.model):
            pred = fitted.predict(fit, _sources(text, sequence, idmapping, wanted), wanted)
        write_h5ad(out, fitted.to_anndata(fit, wanted, pred))
    except GPLLMError as err:
        raise fail(err, debug) from err
    has_var = "with" if pred.var is not None else "without"
    typer.echo(
        f"{fit.model}: predicted {len(wanted)} perturbations x {len(fit.genes)} genes ({has_var} variance); wrote {out}"
    )

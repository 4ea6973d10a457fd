"""Human-facing names and the paper's row order for models, embeddings and metrics.

The sweep names a configuration by ``(model, embedding)``: ``model`` is a
model's ``name`` (``"gp"``, ``"knn_k1"``, ``"knn_ktuned"``, ``"linear"``,
``"ridge_loo"``, ``"random_perturbation"``, ``"nonctrl_mean"``, ``"control"``,
or anything else), ``embedding`` is ``"text"``, ``"sequence"``,
``"text+sequence"`` or ``"none"`` for models that ignore embeddings.

Unknown names are never an error: they get a generic label and sort after the
known models of their kind, so a new model shows up in every table and figure
without touching this module.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from gpllm.evaluate.rows import CALIBRATION_COLUMNS, RECAL, VAR_SCALE

#: Embeddings in the paper's order (Table 1, Figure 2 panels).
EMBEDDINGS: tuple[str, ...] = ("text", "sequence", "text+sequence")
NO_EMBEDDING = "none"

#: Simple baselines in the paper's order (Table 1 rows 1-2; control is ours).
BASELINES: tuple[str, ...] = ("random_perturbation", "nonctrl_mean", "control")
_BASELINE_LABELS = {
    "random_perturbation": "Simple baseline (random pert)",
    "nonctrl_mean": "Simple baseline (non-ctrl mean)",
    "control": "Simple baseline (control)",
}
#: What the paper reports (Table 1, Figures 1-2): the two simple baselines, and
#: kNN (k=1), linear and the GP on every embedding. The report notes any absent.
PAPER_CONFIGS: tuple[tuple[str, str], ...] = (
    ("random_perturbation", NO_EMBEDDING),
    ("nonctrl_mean", NO_EMBEDDING),
    *((model, embedding) for embedding in EMBEDDINGS for model in ("knn_k1", "linear", "gp")),
)
#: Published methods run outside gpllm whose results may be merged in (Table 1 row 3).
_PUBLISHED = {"gears": "GEARS"}

#: GP variants ("gp_<variant>"), e.g. the sum of one RBF per embedding block.
_GP_VARIANTS = {
    "blocks": "block-additive kernel",
    "scaled": "per-gene scales",
    "select": "per-gene scales, kernel by LOO",
}

#: Short column headers (Table 1) and axis labels (figures) per metric column.
METRIC_HEADERS: dict[str, str] = {
    "pearson_de": "Cor top 20",
    "pearson_all": "Cor",
    "mae_de": "MAE top 20",
    "mae_all": "MAE",
    "pearson_de_meanref": "Cor top 20 (train-mean ref.)",
    "nll": "NLL",
    "coverage90": "90% coverage",
}
METRIC_AXIS_LABELS: dict[str, str] = {
    "pearson_de": "Pearson Δ (top 20 DE genes)",
    "pearson_all": "Pearson Δ (all genes)",
    "mae_de": "MAE (top 20 DE genes)",
    "mae_all": "MAE (all genes)",
    "pearson_de_meanref": "Pearson Δ vs train mean (top 20 DE)",
    "nll": "Negative log-likelihood",
    "coverage90": "Coverage of 90% interval",
}
#: True where larger is better; None where neither is (coverage should equal 0.9).
HIGHER_IS_BETTER: dict[str, bool | None] = {
    "pearson_de": True,
    "pearson_all": True,
    "mae_de": False,
    "mae_all": False,
    "pearson_de_meanref": True,
    "nll": False,
    "coverage90": None,
}


def _calibration_entries() -> tuple[dict[str, str], dict[str, str], dict[str, bool | None]]:
    """(headers, axis labels, directions) of the sweep's calibration columns: NLL, CRPS
    (lower is better) and central-interval coverage (should equal its level), over all
    or the top-20 DE genes, raw or recalibrated, and the recalibration factor."""
    headers, axes, higher = (
        {VAR_SCALE: "Scale s"},
        {VAR_SCALE: "Variance scale s (training-fold LOO)"},
        {VAR_SCALE: None},
    )
    for column in CALIBRATION_COLUMNS:
        base, de = column.removesuffix("_de"), column.endswith("_de")
        level = base.removeprefix("coverage")
        if level != base:
            header, axis, better = f"{level}% coverage", f"Coverage of the {level}% interval", None
        else:
            header, axis, better = base.upper(), {"nll": "Negative log-likelihood", "crps": "CRPS"}[base], False
        for suffix, note in (("", ""), (RECAL, " recal.")):
            headers[column + suffix] = header + (" top 20" if de else "") + note
            axes[column + suffix] = axis + (" (top 20 DE genes)" if de else "") + note
            higher[column + suffix] = better
    return headers, axes, higher


_HEADERS, _AXES, _HIGHER = _calibration_entries()
METRIC_HEADERS = _HEADERS | METRIC_HEADERS  # the hand-written entries (nll, coverage90) win
METRIC_AXIS_LABELS = _AXES | METRIC_AXIS_LABELS
HIGHER_IS_BETTER = _HIGHER | HIGHER_IS_BETTER

#: The paper's numbering of the per-screen outputs (Table 1 is K562, S1 is RPE1).
_PAPER_TABLE = {"K562": "Table 1", "RPE1": "Table S1"}
_PAPER_FIGURE_1 = {"K562": "Figure 1", "RPE1": "Figure S1"}


class ModelKey(NamedTuple):
    """One configuration of the results table: a model on an embedding."""

    model: str
    embedding: str


def embedding_label(embedding: str) -> str:
    """``"text+sequence"`` -> ``"text + sequence"`` (the paper's spelling)."""
    return embedding.replace("+", " + ")


def model_label(model: str, embedding: str) -> str:
    """The paper's name for a configuration, e.g. ``("gp", "text") -> "GP+LLM (text)"``.

    A name that already ends in parentheses takes the embedding inside them
    (``("knn_k1", "text") -> "kNN (k=1, text)"``), never a second pair.
    """
    if model in _BASELINE_LABELS or model in _PUBLISHED:
        base = (_BASELINE_LABELS | _PUBLISHED)[model]
    elif model_family(model) == "gp":
        variant = model[len("gp_") :]
        base = "GP+LLM" + (f", {_GP_VARIANTS.get(variant, variant)}" if variant else "")
    else:
        base = _model_class_label(model)
    if embedding == NO_EMBEDDING:
        return base
    if base.endswith(")"):
        return f"{base[:-1]}, {embedding_label(embedding)})"
    return f"{base} ({embedding_label(embedding)})"


def _model_class_label(model: str) -> str:
    """``knn_k1`` -> ``kNN (k=1)``, ``ridge_loo`` -> ``Ridge (LOO)``, unknown -> itself."""
    if m := re.fullmatch(r"knn_k(\w+?)(_cosine)?", model):
        k = "tuned k" if m[1] == "tuned" else f"k={m[1]}"
        return f"kNN ({k}{', cosine' if m[2] else ''})"
    if model == "linear":
        return "Linear"
    if m := re.fullmatch(r"ridge(?:_(\w[\w.]*))?", model):
        how = m[1] or ""
        how = f"λ={how[3:]}" if how.startswith("lam") else how.upper()
        return f"Ridge ({how})" if how else "Ridge"
    return model


def model_family(model: str) -> str:
    """Coarse class: ``knn``, ``ridge``, ``gp`` (``gp`` and ``gp_*`` variants) or the name itself."""
    for family in ("knn", "ridge"):
        if model.startswith(family):
            return family
    return "gp" if model == "gp" or model.startswith("gp_") else model


def _embedding_rank(embedding: str) -> tuple[int, str]:
    if embedding in EMBEDDINGS:
        return EMBEDDINGS.index(embedding), ""
    return len(EMBEDDINGS), embedding  # unknown embeddings after the paper's, by name


def _class_rank(model: str) -> int:
    """Within one embedding: kNN k=1, other kNN, linear, ridge, anything else."""
    if model == "knn_k1":
        return 0
    return {"knn": 1, "linear": 2, "ridge": 3}.get(model_family(model), 4)


def row_order(key: ModelKey) -> tuple:
    """Sort key putting configurations in the paper's Table 1 order.

    Baselines (random pert, non-ctrl mean, control), published methods (GEARS),
    then per embedding (text, sequence, text+sequence) kNN / linear / ridge /
    other, and the GP last, by embedding (``gp_*`` variants after it). Ties
    break on the names.
    """
    model, embedding = key
    if model in BASELINES:
        return (0, BASELINES.index(model), _embedding_rank(embedding), model)
    if model_family(model) == "gp":  # plain GP per embedding, then its variants
        return (3, model != "gp", _embedding_rank(embedding), model)
    if model in _PUBLISHED or embedding == NO_EMBEDDING:
        return (1, 0, _embedding_rank(embedding), model)
    return (2, _embedding_rank(embedding), _class_rank(model), model)


def paper_table_name(screen: str) -> str:
    """``"Table 1"`` for K562, ``"Table S1"`` for RPE1, ``"Table"`` for other screens."""
    return _PAPER_TABLE.get(screen, "Table")


def paper_figure_1_name(screen: str) -> str:
    """``"Figure 1"`` for K562, ``"Figure S1"`` for RPE1, ``"Figure 1"`` otherwise."""
    return _PAPER_FIGURE_1.get(screen, "Figure 1")


def file_slug(name: str) -> str:
    """A screen name made safe for a file name (``"K562 essential" -> "K562_essential"``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "screen"


#: Screens named after their cell line (the paper's, and Replogle's others).
CELL_LINES = frozenset({"K562", "RPE1", "HepG2", "Jurkat", "HEK293T", "A549", "MCF7"})


def screen_description(screen: str) -> str:
    """``"K562 cell line"`` for a cell line's screen, ``"norman19 screen"`` for any other name."""
    return f"{screen} cell line" if screen in CELL_LINES else f"{screen} screen"

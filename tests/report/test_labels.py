"""The paper's names and row order for configurations."""

from __future__ import annotations

import random

import pytest

from gpllm.models.registry import BUILTINS
from gpllm.report.labels import (
    ModelKey,
    embedding_label,
    file_slug,
    model_family,
    model_label,
    paper_figure_1_name,
    paper_table_name,
    row_order,
)


@pytest.mark.parametrize(
    "model, embedding, label",
    [
        ("random_perturbation", "none", "Simple baseline (random pert)"),  # Table 1's spelling
        ("nonctrl_mean", "none", "Simple baseline (non-ctrl mean)"),
        ("gears", "none", "GEARS"),
        ("gp", "text", "GP+LLM (text)"),
        ("gp", "text+sequence", "GP+LLM (text + sequence)"),
        ("gp_blocks", "sequence", "GP+LLM, block-additive kernel (sequence)"),
        ("knn_k1", "text", "kNN (k=1, text)"),
        ("knn_ktuned", "sequence", "kNN (tuned k, sequence)"),
        ("knn_k5", "none", "kNN (k=5)"),
        ("linear", "text", "Linear (text)"),
        ("ridge", "text", "Ridge (text)"),
        ("ridge_loo", "text", "Ridge (LOO, text)"),
        ("my_model", "my_emb", "my_model (my_emb)"),  # unknown: generic, never an error
    ],
)
def test_model_label(model, embedding, label):
    assert model_label(model, embedding) == label


def test_every_registered_model_has_a_distinct_label():
    labels = {model_label(name, "text") for name in BUILTINS}
    assert len(labels) == len(BUILTINS)
    assert all(label != "text" and not label.startswith(" ") for label in labels)


def test_row_order_is_the_papers():
    paper = [
        ModelKey("random_perturbation", "none"),
        ModelKey("nonctrl_mean", "none"),
        ModelKey("control", "none"),
        ModelKey("gears", "none"),
        ModelKey("knn_k1", "text"),
        ModelKey("knn_ktuned", "text"),
        ModelKey("linear", "text"),
        ModelKey("ridge", "text"),
        ModelKey("knn_k1", "sequence"),
        ModelKey("linear", "text+sequence"),
        ModelKey("other", "text+sequence"),
        ModelKey("knn_k1", "zz_new"),  # unknown embeddings after the paper's three
        ModelKey("gp", "text"),
        ModelKey("gp", "sequence"),
        ModelKey("gp", "text+sequence"),
        ModelKey("gp_blocks", "text"),
    ]
    shuffled = paper[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(shuffled, key=row_order) == paper


def test_small_helpers():
    assert embedding_label("text+sequence") == "text + sequence"
    assert [model_family(m) for m in ("knn_k1", "ridge", "gp_blocks", "gp", "linear")] == [
        "knn",
        "ridge",
        "gp",
        "gp",
        "linear",
    ]
    assert (paper_table_name("K562"), paper_table_name("RPE1"), paper_table_name("X")) == (
        "Table 1",
        "Table S1",
        "Table",
    )
    assert paper_figure_1_name("RPE1") == "Figure S1"
    assert file_slug("K562 essential/v2") == "K562_essential_v2"
    assert file_slug("///") == "screen"


def test_only_cell_lines_are_called_cell_lines():
    from gpllm.report.labels import screen_description

    assert screen_description("K562") == "K562 cell line"
    assert screen_description("norman19") == "norman19 screen"

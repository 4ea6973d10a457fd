"""Pairs as data: order-free names, links to singles, bad conditions; the synthetic pair screen."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gpllm.data.screens.pairs import pair_name, pair_screen, split_condition
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.data.synthetic.pairs import CLASSES, PairConfig, _novel, make_pair_screen
from gpllm.data.synthetic.screens import make_screens
from gpllm.errors import DataError, InputError

SMALL = dict(n_perts=40, n_genes=60, n_pairs=30, text_dim=16, seq_dim=16, hidden=8)


def _screen(perts, genes=("g0", "g1", "g2"), seed=0):
    rng = np.random.default_rng(seed)
    G = len(genes)
    return PerturbationData(
        Y=rng.random((len(perts), G)),
        ctrl=np.zeros(G),
        de=np.tile(np.arange(2), (len(perts), 1)),
        perts=perts,
        genes=genes,
    )


def test_pair_names_are_order_free():
    assert split_condition(" B + A") == ("A", "B")
    assert pair_name("B", "A") == pair_name("A", "B") == "A+B"
    with pytest.raises(InputError, match="twice"):
        pair_name("A", "A")


def test_pairs_link_to_their_singles_and_three_gene_conditions_are_set_apart(caplog):
    singles = _screen(("A", "B", "C"))
    combos = _screen(("B+A", "C+D", "A+B+C"), seed=1)
    with caplog.at_level(logging.WARNING):
        screen = pair_screen(singles, combos)
    assert screen.pairs.perts == ("A+B", "C+D")
    assert screen.genes == (("A", "B"), ("C", "D"))
    np.testing.assert_array_equal(screen.single_rows, [[0, 1], [2, -1]])  # D has no single
    np.testing.assert_array_equal(screen.pairs.Y, combos.Y[:2])  # rows follow their pair
    assert screen.set_apart == ("A+B+C",)
    assert screen.pairs.provenance["n_set_apart_3plus_genes"] == 1
    assert "A+B+C" in caplog.text
    assert screen.all_genes == ("A", "B", "C", "D")


@pytest.mark.parametrize(
    "combos, message",
    [(("A+A", "A+B"), "one gene twice"), (("A+B", "B+A"), "two labels"), (("A+B", "A+B+C"), "1 two-gene")],
)
def test_bad_pair_conditions_are_clear_errors(combos, message):
    with pytest.raises(DataError, match=message):
        pair_screen(_screen(("A", "B")), _screen(combos))


def test_no_pairs_and_mismatched_genes_are_errors():
    with pytest.raises(DataError, match="no two-gene"):
        pair_screen(_screen(("A", "B")), None)
    with pytest.raises(InputError, match="share measured genes"):
        pair_screen(_screen(("A", "B")), _screen(("A+B", "A+C"), genes=("g0", "g1", "x")))


# ------------------------------------------------------------------ synthetic
def test_synthetic_singles_are_the_single_gene_draw_and_draws_are_seeded():
    draw = make_pair_screen(3, **SMALL)
    singles = make_screens(
        3,
        n_perts=40,
        n_genes=60,
        text_dim=16,
        seq_dim=16,
        hidden=8,
        cell_lines=("K562",),
        amplitude=(0.035,),
        common_weight=(0.4,),
    ).screens["K562"]
    np.testing.assert_array_equal(draw.screen.singles.Y, singles.Y)
    again = make_pair_screen(3, **SMALL)
    np.testing.assert_array_equal(again.screen.pairs.Y, draw.screen.pairs.Y)
    assert make_pair_screen(4, **SMALL).screen.pairs.perts != draw.screen.pairs.perts


def test_synthetic_truth_is_additive_plus_a_class_interaction_scaled_by_strength():
    half = make_pair_screen(0, interaction_strength=0.5, **SMALL).truth
    full = make_pair_screen(0, interaction_strength=1.0, **SMALL)
    none = make_pair_screen(0, interaction_strength=0.0, **SMALL).truth
    truth, screen = full.truth, full.screen
    # the additive part, recomputed from the singles' noise-free profiles
    ctrl = truth.singles.baseline["K562"]
    delta = truth.singles.Y_true["K562"] - ctrl
    rows = screen.single_rows
    np.testing.assert_allclose(truth.additive, ctrl + delta[rows[:, 0]] + delta[rows[:, 1]], rtol=1e-12)
    np.testing.assert_array_equal(none.interaction, 0.0)  # no floor bites at this size
    assert none.n_floored == 0
    if truth.n_floored == 0 and half.n_floored == 0:
        np.testing.assert_allclose(truth.interaction, 2 * half.interaction, rtol=1e-10, atol=1e-12)
    # the class follows the latent pathways; independent pairs do not interact
    module = truth.singles.module
    same = module[rows[:, 0]] == module[rows[:, 1]]
    np.testing.assert_array_equal(same, truth.cls == "buffering")
    np.testing.assert_array_equal(truth.interaction[truth.cls == "independent"], 0.0)
    assert set(truth.cls) == set(CLASSES)
    # buffering pulls the pair back towards one single's effect: |pair| < |sum|
    buf = truth.cls == "buffering"
    assert np.abs(truth.Y_true[buf] - ctrl).sum() < np.abs(truth.additive[buf] - ctrl).sum()


def test_novel_synergy_response_is_symmetric_in_the_two_genes():
    u = np.random.default_rng(0).standard_normal((6, 4))
    L = np.random.default_rng(1).standard_normal((3, 5))
    pairs = np.array([[0, 1], [2, 5]])
    a = _novel(u, L, pairs, np.random.default_rng(2), 32, 1.5)
    b = _novel(u, L, pairs[:, ::-1], np.random.default_rng(2), 32, 1.5)
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize(
    "bad",
    [dict(interaction_strength=-1.0), dict(frac_buffering=0.8, frac_synergy=0.5), dict(coupling=0.0), dict(n_pairs=1)],
)
def test_bad_pair_config_is_an_input_error(bad):
    with pytest.raises(InputError, match="PairConfig"):
        PairConfig(**bad)


def test_too_many_pairs_of_a_class_names_it():
    with pytest.raises(InputError, match="buffering pairs asked for"):
        make_pair_screen(0, **{**SMALL, "n_perts": 12, "n_pairs": 60, "frac_buffering": 0.9, "frac_synergy": 0.0})

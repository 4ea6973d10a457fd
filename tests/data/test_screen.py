"""PerturbationData: validation, selection, AnnData/h5ad round trips, intersection."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

from gpllm.data.screens.perturbation_data import UNS_KEY, PerturbationData, intersect_perturbations
from gpllm.errors import DataError, InputError, NonFiniteError, ShapeError


def make_data(perts=("A", "B", "C"), n_genes=25, k=20, seed=0, **prov) -> PerturbationData:
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(len(perts), n_genes))
    ctrl = rng.normal(size=n_genes)
    de = np.argsort(-np.abs(Y - ctrl), axis=1)[:, :k]
    genes = tuple(f"G{j}" for j in range(n_genes))
    return PerturbationData(Y, ctrl, de, perts, genes, {"source": "test", **prov})


def test_arrays_are_read_only_copies_and_delta_is_y_minus_ctrl():
    Y = np.arange(6.0).reshape(2, 3)
    d = PerturbationData(Y, np.ones(3), np.array([[0], [2]]), ["A", "B"], ["x", "y", "z"])
    Y[0, 0] = 99.0
    assert d.Y[0, 0] == 0.0
    with pytest.raises(ValueError):
        d.Y[0, 0] = 1.0
    np.testing.assert_array_equal(d.delta, np.arange(6.0).reshape(2, 3) - 1.0)
    assert (d.n_perts, d.n_genes) == (2, 3)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(Y=np.zeros((3, 4))), ShapeError, r"Y has shape \(3, 4\)"),
        (dict(ctrl=np.zeros(4)), ShapeError, "ctrl has shape"),
        (dict(de=np.zeros((2, 20), dtype=int)), ShapeError, "de has shape"),
        (dict(de=np.full((3, 20), 25)), InputError, r"de indices must lie in \[0, 25\)"),
        (dict(de=np.zeros((3, 20))), InputError, "integer gene indices"),
        (dict(perts=("A", "B", "A")), DataError, "duplicated perturbation names: 'A'"),
        (dict(genes=tuple(["G0"] * 25)), DataError, "duplicated gene names: 'G0'"),
        (
            dict(perts=("A",), Y=np.zeros((1, 25)), de=np.zeros((1, 20), dtype=int)),
            DataError,
            "1 perturbation.*at least 2",
        ),
        (dict(provenance={"x": object()}), InputError, "JSON-serialisable"),
    ],
)
def test_bad_fields_are_named(change, error, match):
    d = make_data()
    fields = dict(Y=d.Y, ctrl=d.ctrl, de=d.de, perts=d.perts, genes=d.genes, provenance=d.provenance)
    with pytest.raises(error, match=match):
        PerturbationData(**{**fields, **change})


def test_repeated_de_index_names_the_perturbation():
    d = make_data()
    de = np.array(d.de)
    de[1, 1] = de[1, 0]
    with pytest.raises(InputError, match="repeated DE gene index for 'B'"):
        PerturbationData(d.Y, d.ctrl, de, d.perts, d.genes)


def test_nan_names_perturbation_and_gene():
    d = make_data()
    Y = np.array(d.Y)
    Y[2, 4] = np.nan
    with pytest.raises(NonFiniteError, match=r"'G4'.*'C'"):
        PerturbationData(Y, d.ctrl, d.de, d.perts, d.genes)


def test_select_reorders_and_notes():
    d = make_data()
    s = d.select(["C", "A"], note="why")
    assert s.perts == ("C", "A")
    np.testing.assert_array_equal(s.Y, d.Y[[2, 0]])
    np.testing.assert_array_equal(s.de, d.de[[2, 0]])
    np.testing.assert_array_equal(s.ctrl, d.ctrl)
    assert s.provenance["steps"] == ["why"]
    with pytest.raises(DataError, match="unknown perturbation.*'Z'"):
        d.select(["A", "Z"])
    with pytest.raises(DataError, match="0 perturbation.*at least 2"):
        d.select([])


def test_anndata_round_trip_is_exact():
    d = make_data(steps=["a", "b"], n=3)
    a = d.to_anndata()
    assert a.shape == (3, 25) and list(a.obs_names) == list(d.perts)
    assert PerturbationData.from_anndata(a) == d


def test_h5ad_round_trip_is_exact(tmp_path):
    d = make_data(nested={"k": [1, 2.5, None]})
    back = PerturbationData.load(d.save(tmp_path / "d.h5ad"))
    assert back == d
    assert back.provenance["nested"] == {"k": [1, 2.5, None]}
    assert back != make_data(seed=1, nested={"k": [1, 2.5, None]})


def test_load_refuses_plain_anndata_and_other_versions(tmp_path):
    plain = tmp_path / "plain.h5ad"
    ad.AnnData(np.zeros((2, 3))).write_h5ad(plain)
    with pytest.raises(DataError, match=f"{plain}: not a gpllm PerturbationData"):
        PerturbationData.load(plain)
    a = make_data().to_anndata()
    a.uns[UNS_KEY]["format_version"] = 99
    with pytest.raises(DataError, match="format version 99"):
        PerturbationData.from_anndata(a, where="x.h5ad")


def test_intersect_keeps_shared_in_first_order_and_records_drops():
    a = make_data(("A", "B", "C", "D"), source="k562")
    b = make_data(("D", "X", "B", "A"), n_genes=30, seed=2, source="rpe1")
    ia, ib = intersect_perturbations(a, b)
    assert ia.perts == ib.perts == ("A", "B", "D")
    assert ia.genes == a.genes and ib.genes == b.genes  # genes untouched
    np.testing.assert_array_equal(ib.Y, b.Y[[3, 2, 0]])
    assert (ia.provenance["n_dropped_not_shared"], ib.provenance["n_dropped_not_shared"]) == (1, 1)


def test_intersect_needs_two_shared():
    a = make_data(("A", "B"), source="k562")
    b = make_data(("B", "C"), source="rpe1")
    with pytest.raises(DataError, match="'k562', 'rpe1' share 1 perturbation"):
        intersect_perturbations(a, b)
    with pytest.raises(InputError):
        intersect_perturbations()

"""Embedding file formats: GenePT pickle, CSV/parquet tables, UniProt ProtT5 h5 + ID mapping.

Round trips check our writers against our readers; the real GenePT CSV in
shared/ is cross-checked with Python's own csv module, and the idmapping
readers with hand-written files in UniProt's published layouts.
"""

from __future__ import annotations

import collections
import csv
import gzip
import pickle

import numpy as np
import pytest

from gpllm.data.embeddings.files import (
    GENEPT_DIM,
    PROTT5_DIM,
    load_genept_pickle,
    load_prott5_h5,
    load_table,
    load_vectors,
    read_uniprot_idmapping,
    write_genept_pickle,
    write_prott5_h5,
    write_table,
    write_uniprot_idmapping,
    write_vectors,
)
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.errors import InputError

GENEPT_CSV = "genept_ada002_adamson86.csv.gz"


@pytest.fixture
def vecs() -> GeneVectors:
    rng = np.random.default_rng(0)
    return GeneVectors(("TP53", "MYC", "GATA1", "RPL5"), rng.normal(size=(4, 7)), "test")


# ------------------------------------------------------------------ pickles
@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("as_array", [True, False])
def test_genept_pickle_dict_of_vectors(tmp_path, vecs, protocol, as_array):
    """GenePT's layout (dict symbol -> vector) under every pickle protocol numpy uses."""
    d = {n: (row.copy() if as_array else [float(x) for x in row]) for n, row in zip(vecs.names, vecs.X)}
    path = tmp_path / "genept.pickle"
    path.write_bytes(pickle.dumps(d, protocol=protocol))
    out = load_genept_pickle(path)
    assert out.names == vecs.names and out.source == str(path)
    np.testing.assert_array_equal(out.X, vecs.X)


def test_genept_pickle_float32_arrays_and_ordered_dict(tmp_path, vecs):
    d = collections.OrderedDict((n, row.astype(np.float32)) for n, row in zip(vecs.names, vecs.X))
    path = tmp_path / "g.pkl"
    path.write_bytes(pickle.dumps(d))
    out = load_genept_pickle(path, dim=7)
    np.testing.assert_array_equal(out.X, vecs.X.astype(np.float32).astype(np.float64))


def test_write_genept_pickle_is_a_plain_dict_of_lists(tmp_path, vecs):
    path = write_genept_pickle(tmp_path / "g.pickle", vecs)
    with path.open("rb") as f:
        d = pickle.load(f)  # what GenePT's own users do with the file
    assert type(d) is dict and list(d) == list(vecs.names)
    assert all(type(v) is list for v in d.values())
    np.testing.assert_array_equal(np.array(d["MYC"]), vecs.X[1])


def test_genept_pickle_drops_zero_placeholder(tmp_path, vecs):
    d = {"ctrl": [0.0] * 7, **{n: list(r) for n, r in zip(vecs.names, vecs.X)}}
    path = tmp_path / "g.pickle"
    path.write_bytes(pickle.dumps(d))
    assert load_genept_pickle(path).names == vecs.names


# ------------------------------------------------------------------- tables
def test_real_genept_csv(shared_data):
    """The real ada-002 vectors: 86 genes x 1536, unit norm, 'ctrl' row dropped,
    values identical to a plain csv-module parse of the same file."""
    path = shared_data / GENEPT_CSV
    v = load_table(path, dim=GENEPT_DIM)
    assert (len(v), v.dim) == (86, GENEPT_DIM)
    assert "ctrl" not in v.names and "AMIGO3" in v.names
    np.testing.assert_allclose(np.linalg.norm(v.X, axis=1), 1.0, atol=1e-6)
    with gzip.open(path, "rt", newline="") as f:
        rows = {r[0]: np.array(r[1:], dtype=float) for r in list(csv.reader(f))[1:]}
    assert set(rows) == set(v.names) | {"ctrl"}
    for name in ("AMIGO3", v.names[-1]):
        np.testing.assert_array_equal(v.X[v.names.index(name)], rows[name])


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".csv.gz"])
def test_table_round_trip(tmp_path, vecs, suffix):
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv.gz":
        plain = write_table(tmp_path / "t.csv", vecs)
        path.write_bytes(gzip.compress(plain.read_bytes()))
    else:
        write_table(path, vecs)
    out = load_table(path)
    assert out.names == vecs.names
    np.testing.assert_allclose(out.X, vecs.X, rtol=1e-15)


def test_tsv_with_named_index_column(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("x\tsymbol\ty\n1.5\tA\t2\n-3\tB\t4\n")
    out = load_table(path, index_col="symbol")
    assert out.names == ("A", "B")
    np.testing.assert_array_equal(out.X, [[1.5, 2.0], [-3.0, 4.0]])


# ------------------------------------------------------------ UniProt / ProtT5
def test_idmapping_dat_layout(tmp_path):
    """UniProt's idmapping.dat: 3 columns, no header, first row is not Gene_Name."""
    path = tmp_path / "HUMAN_9606_idmapping.dat"
    path.write_text(
        "P04637\tUniProtKB-AC\tP04637\n"
        "P04637\tUniProtKB-ID\tP53_HUMAN\n"
        "P04637\tGene_Name\tTP53\n"
        "P01106\tGeneID\t4609\n"
        "P01106\tGene_Name\tMYC\n"
        "Q5U0J9\tGene_Name\tMYC\n"
        "P15976\tGene_Synonym\tERYF1\n"
    )
    m = read_uniprot_idmapping(path)
    assert m == {"TP53": ("P04637",), "MYC": ("P01106", "Q5U0J9")}
    gz = tmp_path / "m.dat.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert read_uniprot_idmapping(gz) == m


def test_idmapping_service_tsv_puts_reviewed_first(tmp_path):
    path = tmp_path / "idmapping.tsv"
    path.write_text("From\tEntry\tReviewed\nMYC\tQ5U0J9\tunreviewed\nTP53\tP04637\treviewed\nMYC\tP01106\treviewed\n")
    assert read_uniprot_idmapping(path) == {"MYC": ("P01106", "Q5U0J9"), "TP53": ("P04637",)}


def test_idmapping_gene_names_column_takes_primary(tmp_path):
    path = tmp_path / "uniprot.tsv"
    path.write_text("Entry\tGene Names\nP15976\tGATA1 ERYF1 GF1\n")
    assert read_uniprot_idmapping(path) == {"GATA1": ("P15976",)}


def test_idmapping_round_trip(tmp_path):
    m = {"TP53": ("P04637",), "MYC": ("P01106", "Q5U0J9")}
    assert read_uniprot_idmapping(write_uniprot_idmapping(tmp_path / "m.dat", m)) == m


def _h5(tmp_path, accessions, d=PROTT5_DIM, seed=1):
    X = np.random.default_rng(seed).normal(size=(len(accessions), d)).astype(np.float32)
    return write_prott5_h5(tmp_path / "per-protein.h5", accessions, X), X


def test_prott5_h5_by_accession(tmp_path):
    path, X = _h5(tmp_path, ["P04637", "P01106", "P15976"])
    v = load_prott5_h5(path)
    assert v.names == ("P01106", "P04637", "P15976") and v.dim == PROTT5_DIM
    np.testing.assert_array_equal(v.X, X[[1, 0, 2]].astype(np.float64))


def test_prott5_h5_with_symbol_map(tmp_path, caplog):
    path, X = _h5(tmp_path, ["P04637", "P01106", "Q5U0J9", "P15976"])
    m = {"TP53": ("P04637",), "MYC": ("Q99999", "P01106", "Q5U0J9"), "NOPE": ("Q00000",)}
    with caplog.at_level("INFO"):
        v = load_prott5_h5(path, id_mapping=m)
    # MYC: the first accession present in the file wins; NOPE has none and is left out
    assert v.names == ("TP53", "MYC")
    np.testing.assert_array_equal(v.X, X[[0, 1]].astype(np.float64))
    assert "1 gene(s) map to several accessions" in caplog.text
    sub = load_prott5_h5(path, id_mapping=write_uniprot_idmapping(tmp_path / "m.dat", m), genes=["MYC"])
    assert sub.names == ("MYC",)


# ------------------------------------------------------------------ dispatch
@pytest.mark.parametrize("name", ["v.pickle", "v.pkl", "v.parquet", "v.csv"])
def test_write_vectors_then_load_vectors(tmp_path, vecs, name):
    out = load_vectors(write_vectors(tmp_path / name, vecs))
    assert out.names == vecs.names
    np.testing.assert_allclose(out.X, vecs.X, rtol=1e-15)


def test_load_vectors_dispatches_h5(tmp_path):
    path, X = _h5(tmp_path, ["P04637"], d=5)
    np.testing.assert_array_equal(load_vectors(path, dim=5).X, X.astype(np.float64))


def test_write_vectors_refuses_h5(tmp_path, vecs):
    with pytest.raises(InputError, match=r"v\.h5"):
        write_vectors(tmp_path / "v.h5", vecs)

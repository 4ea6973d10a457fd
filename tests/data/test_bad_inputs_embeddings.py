"""Bad embedding inputs: each raises a gpllm error whose message names the file and the gene.

Wrong dimension, no overlap with the perturbations, corrupt or truncated
pickle/h5/table/JSON, NaN, duplicated symbols, and pickles that try to build
anything but plain containers and arrays (refused before any code runs).
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from gpllm.data.embeddings.assemble import align
from gpllm.data.embeddings.files import (
    GENEPT_DIM,
    load_genept_pickle,
    load_prott5_h5,
    load_table,
    load_vectors,
    read_uniprot_idmapping,
    write_prott5_h5,
)
from gpllm.data.embeddings.text import model_path, read_descriptions
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.errors import (
    CorruptFileError,
    DataError,
    EmbeddingError,
    GPLLMError,
    InputError,
    MissingFileError,
    NonFiniteError,
)


def _pickle(tmp_path, obj, name="genept.pickle", **kw):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(obj, **kw))
    return path


GOOD = {"TP53": [0.1, 0.2, 0.3], "MYC": [0.4, 0.5, 0.6], "GATA1": [0.7, 0.8, 0.9]}


# ------------------------------------------------------------ wrong dimension
def test_pickle_wrong_dimension_names_file(tmp_path):
    path = _pickle(tmp_path, GOOD)
    with pytest.raises(EmbeddingError, match=rf"{path}: 3 vector\(s\) are not {GENEPT_DIM}-dimensional"):
        load_genept_pickle(path, dim=GENEPT_DIM)


def test_pickle_one_odd_vector_names_the_gene(tmp_path):
    path = _pickle(tmp_path, {**GOOD, "BAD1": [1.0, 2.0]})
    with pytest.raises(EmbeddingError, match=r"genept\.pickle: 1 vector\(s\) are not 3-dimensional.*'BAD1'"):
        load_genept_pickle(path)


def test_h5_wrong_dimension_names_gene_and_accession(tmp_path):
    path = write_prott5_h5(tmp_path / "per-protein.h5", ["P04637", "P01106"], np.ones((2, 1024)))
    import h5py

    with h5py.File(path, "a") as f:
        f.create_dataset("P15976", data=np.ones(512, dtype=np.float32))
    m = {"TP53": ("P04637",), "GATA1": ("P15976",)}
    with pytest.raises(EmbeddingError, match=r"per-protein\.h5: 1 embedding\(s\) are not 1024-dim.*GATA1 \(P15976\)"):
        load_prott5_h5(path, id_mapping=m)


# ------------------------------------------------------------ no overlap
def test_no_overlap_names_source_file_and_genes():
    v = GeneVectors(("TP53", "MYC"), np.ones((2, 3)), "/data/genept.pickle")
    with pytest.raises(EmbeddingError, match=r"/data/genept\.pickle: no overlap.*'TP53'.*'RPL5'"):
        align({"text": v}, ["RPL5", "RPS8"])


def test_h5_none_of_the_genes(tmp_path):
    path = write_prott5_h5(tmp_path / "p.h5", ["P04637"], np.ones((1, 1024)))
    with pytest.raises(EmbeddingError, match=r"p\.h5: none of the requested genes.*'P04637'"):
        load_prott5_h5(path, id_mapping={"MYC": ("P01106",)})


# ------------------------------------------------------------ corrupt / truncated
@pytest.mark.parametrize("cut", [1, 10, -1])
def test_truncated_pickle(tmp_path, cut):
    blob = pickle.dumps({g: np.asarray(v) for g, v in GOOD.items()})
    path = tmp_path / "cut.pickle"
    path.write_bytes(blob[:cut])
    with pytest.raises(CorruptFileError, match=r"cut\.pickle: not a readable pickle"):
        load_genept_pickle(path)


def test_garbage_pickle(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"GATA1\t0.1\t0.2\n")  # a text table saved under a pickle's name
    with pytest.raises(CorruptFileError, match=r"junk\.pkl"):
        load_vectors(path)


def test_truncated_h5(tmp_path):
    good = write_prott5_h5(tmp_path / "full.h5", [f"P{i:05d}" for i in range(20)], np.ones((20, 1024)))
    path = tmp_path / "cut.h5"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(CorruptFileError, match=r"cut\.h5"):
        load_prott5_h5(path)


def test_h5_group_instead_of_dataset(tmp_path):
    import h5py

    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_group("P04637")
    with pytest.raises(CorruptFileError, match=r"g\.h5: 'P04637' \(gene 'TP53'\) is a group"):
        load_prott5_h5(path, id_mapping={"TP53": ("P04637",)})


def test_missing_file(tmp_path):
    for name in ("none.pickle", "none.h5", "none.csv"):
        with pytest.raises(MissingFileError, match=name):
            load_vectors(tmp_path / name)


# ------------------------------------------------------------ NaN
def test_nan_in_pickle_names_gene_and_file(tmp_path):
    path = _pickle(tmp_path, {**GOOD, "MYC": [0.4, float("nan"), 0.6]})
    with pytest.raises(NonFiniteError, match=r"genept\.pickle: embedding holds 1 non-finite.*'MYC'"):
        load_genept_pickle(path)


def test_nan_in_h5_names_gene(tmp_path):
    X = np.ones((2, 1024))
    X[1, 7] = np.nan
    path = write_prott5_h5(tmp_path / "p.h5", ["P04637", "P01106"], X)
    with pytest.raises(NonFiniteError, match=r"p\.h5.*'MYC'"):
        load_prott5_h5(path, id_mapping={"TP53": ("P04637",), "MYC": ("P01106",)})


# ------------------------------------------------------------ duplicated symbols
def test_duplicate_symbol_after_str_in_pickle(tmp_path):
    path = _pickle(tmp_path, {1: [1.0, 2.0], "1": [3.0, 4.0]})
    with pytest.raises(DataError, match=r"genept\.pickle: 1 duplicated gene names: '1'"):
        load_genept_pickle(path)


# ------------------------------------------------------------ restricted unpickler
class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


class _Plain:
    """An innocent custom class: still not plain data, so refused."""


def test_pickle_that_runs_code_is_refused_before_running(tmp_path):
    target = tmp_path / "pwned"
    path = _pickle(tmp_path, {"TP53": _Evil(str(target))})
    with pytest.raises(CorruptFileError, match=r"genept\.pickle: pickle refers to (posix|os|nt)\.mkdir"):
        load_genept_pickle(path)
    assert not target.exists()


@pytest.mark.parametrize(
    "obj",
    [
        {"TP53": _Plain()},
        {"TP53": np.array([_Plain()], dtype=object)},
        {"TP53": {1, 2, 3}},  # builtins.set: not a vector container GenePT uses
    ],
    ids=["custom-class", "object-array", "set"],
)
def test_pickle_with_non_plain_objects_is_refused(tmp_path, obj):
    path = _pickle(tmp_path, obj, protocol=2)
    with pytest.raises(CorruptFileError, match=r"genept\.pickle: pickle refers to "):
        load_genept_pickle(path)


@pytest.mark.parametrize("obj, msg", [(["TP53", [1.0]], "got list"), ({}, "got dict"), ({"TP53": "ACGT"}, "'TP53'")])
def test_pickle_not_a_dict_of_vectors(tmp_path, obj, msg):
    with pytest.raises(EmbeddingError, match=rf"genept\.pickle.*{msg}"):
        load_genept_pickle(_pickle(tmp_path, obj))


# ------------------------------------------------------------ small bad text files, one table
# (file name, content, reader, error, message): the message must name the file and the gene/column.
BAD_FILES = [
    (
        "emb.csv",
        "gene,0,1\nTP53,1,2\nMYC,3,4\n",
        lambda p: load_table(p, dim=1536),
        EmbeddingError,
        r"emb\.csv: vectors are 2-dimensional, expected 1536",
    ),
    ("emb.csv", "gene,0,1\nTP53,1,2\nMYC,,4\n", load_table, NonFiniteError, r"emb\.csv: .*'MYC'"),
    (
        "emb.csv",
        "gene,0,1\nTP53,1,2\nMYC,3,4\nTP53,5,6\n",
        load_table,
        DataError,
        r"emb\.csv: 1 duplicated gene names: 'TP53'",
    ),
    (
        "emb.csv",
        "a,b\n1,2\n3,4\n",
        load_table,
        EmbeddingError,
        r"emb\.csv: first column 'a' is not a gene-symbol column",
    ),
    ("emb.csv", "a,b\n1,2\n", lambda p: load_table(p, index_col="gene"), EmbeddingError, r"emb\.csv: no column 'gene'"),
    ("emb.csv", "gene,0,note\nTP53,1,x\n", load_table, EmbeddingError, r"emb\.csv: non-numeric column\(s\) 'note'"),
    ("emb.csv", "gene,0\nTP53,1\n,2\n", load_table, EmbeddingError, r"emb\.csv: 1 row\(s\) have no gene symbol"),
    ("t.parquet", b"PAR1 broken", load_table, CorruptFileError, r"t\.parquet: cannot be read as parquet"),
    ("t.csv.gz", b"\x1f\x8b\x08 broken", load_table, CorruptFileError, r"t\.csv\.gz: cannot be read as a table"),
    ("text.h5", "this is not HDF5\n", load_vectors, CorruptFileError, r"text\.h5: not a readable HDF5"),
    (
        "map.tsv",
        "Protein\tOrganism\nP04637\thuman\n",
        read_uniprot_idmapping,
        DataError,
        r"map\.tsv: no gene symbol or accession column",
    ),
    ("s.json", '{"TP53": "ok", "MYC": ', read_descriptions, CorruptFileError, r"s\.json: not a readable JSON"),
    ("s.json", '["TP53", "MYC"]', read_descriptions, DataError, r"s\.json: expected a non-empty JSON object"),
    (
        "s.json",
        '{"TP53": "ok", "MYC": 3, "GATA1": "  "}',
        read_descriptions,
        DataError,
        r"s\.json: 2 gene\(s\) have no description text: 'MYC', 'GATA1'",
    ),
    (
        "s.json",
        '{"TP53": "tumour suppressor", "MYC": "oncogene", "TP53": "again"}',
        read_descriptions,
        DataError,
        r"s\.json: 1 gene symbol\(s\) given twice: 'TP53'",
    ),
]


@pytest.mark.parametrize(
    "name, content, read, err, msg", BAD_FILES, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD_FILES)]
)
def test_bad_file(tmp_path, name, content, read, err, msg):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(err, match=msg):
        read(path)


def test_unknown_text_model(tmp_path):
    with pytest.raises(InputError, match="'no-such-model' is neither a bundled model"):
        model_path("no-such-model")


def test_every_error_is_a_gpllm_error(tmp_path):
    """Callers can catch GPLLMError for all of the above; no raw h5py/pickle exception escapes."""
    path = tmp_path / "x.pickle"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(GPLLMError):
        load_vectors(path)
    (tmp_path / "s.json").write_text(json.dumps({"TP53": None}))
    with pytest.raises(GPLLMError):
        read_descriptions(tmp_path / "s.json")

"""Perturbation labels: configurable column and controls, Replogle IDs, two-gene conditions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gpllm.data.screens.labels import COMBO, CONTROL, NORMAN19, REPLOGLE_BULK, SINGLE, ObsSpec, parse_labels
from gpllm.data.screens.pseudobulk import CONTROL_GROUP, make_groups
from gpllm.errors import DataError


def test_replogle_bulk_ids_from_the_obs_index():
    ids = [
        "1_A1BG_P1P2_ENSG00000121410",
        "10001_non-targeting_non-targeting_non-targeting",
        "2_A1BG_P2_ENSG00000121410",
        "57_HLA_A_P1_ENSG00000206503",  # a symbol with an underscore survives
        "10002_non-targeting_non-targeting_non-targeting",
    ]
    obs = pd.DataFrame({"core_control": [False, True, False, False, True]}, index=pd.Index(ids, name="gene_transcript"))
    lab = parse_labels(obs, REPLOGLE_BULK, "bulk.h5ad")
    assert lab.kind.tolist() == [SINGLE, CONTROL, SINGLE, SINGLE, CONTROL]
    assert lab.target.tolist() == ["A1BG", "", "A1BG", "HLA_A", ""]
    groups = make_groups(lab)
    assert groups.names == (CONTROL_GROUP, "A1BG", "HLA_A")
    assert groups.codes.tolist() == [1, 0, 1, 2, 0]


def test_unparseable_replogle_ids_are_listed():
    obs = pd.DataFrame(index=pd.Index(["1_A1BG_P1_ENSG1", "junk", "9_non-targeting"], name="gene_transcript"))
    with pytest.raises(DataError, match=r"bulk.h5ad: 1 label\(s\) in obs\['gene_transcript'\].*'junk'"):
        parse_labels(obs, REPLOGLE_BULK, "bulk.h5ad")


def test_norman_conditions_single_combo_and_control():
    obs = pd.DataFrame(
        {
            "condition": ["control", "KLF1", "KLF1+MAP2K6", "SGK1+ctrl", "ctrl+ctrl", "SET+KLF1", "ATF4"],
            "dataset": ["norman19"] * 6 + ["mcfaline23"],
        }
    )
    lab = parse_labels(obs, NORMAN19, "devel.h5ad")
    assert lab.keep.tolist() == [True] * 6 + [False]
    assert lab.kind.tolist() == [CONTROL, SINGLE, COMBO, SINGLE, CONTROL, COMBO]
    assert lab.target.tolist() == ["", "KLF1", "KLF1+MAP2K6", "SGK1", "", "KLF1+SET"]  # a pair's genes sorted
    groups = make_groups(lab)
    assert groups.kinds.tolist() == [CONTROL, SINGLE, COMBO, SINGLE, COMBO]


def test_configurable_column_controls_and_separator():
    obs = pd.DataFrame({"target": ["NT", "safe", "A", "A+B", " B "]})
    spec = ObsSpec(pert_col="target", control_labels=("NT", "safe"), combo_sep=None)
    lab = parse_labels(obs, spec)
    assert lab.kind.tolist() == [CONTROL, CONTROL, SINGLE, SINGLE, SINGLE]
    assert lab.target.tolist() == ["", "", "A", "A+B", "B"]  # no separator: 'A+B' is one label


def test_make_subset_accepts_one_value_or_many():
    assert ObsSpec.make_subset({"dataset": "x", "line": ["a", "b"]}) == (("dataset", ("x",)), ("line", ("a", "b")))


@pytest.mark.parametrize(
    ("obs", "spec", "match"),
    [
        (pd.DataFrame({"gene": ["A", "B"]}), ObsSpec(), r"no control rows.*obs\['gene'\].*'non-targeting'"),
        (pd.DataFrame({"guide": ["A", "B"]}), ObsSpec(), r"missing column\(s\) 'gene'; available: 'guide'"),
        (pd.DataFrame({"gene": ["A", None, "non-targeting"]}), ObsSpec(), r"obs column 'gene' has 1 empty"),
        (pd.DataFrame({"gene": ["A", " ", "non-targeting"]}), ObsSpec(), r"1 label\(s\) in obs\['gene'\] are empty"),
        (
            pd.DataFrame({"condition": ["A", "control"], "dataset": ["x", "x"]}),
            NORMAN19,
            r"no row has obs\['dataset'\] in \['norman19'\]; values present: 'x'",
        ),
        (pd.DataFrame({"condition": ["A", "control"]}), NORMAN19, r"missing column\(s\) 'dataset'"),
    ],
)
def test_bad_labels_name_the_column(obs, spec, match):
    with pytest.raises(DataError, match=match):
        parse_labels(obs, spec, "f.h5ad")


def test_labels_are_read_as_strings():
    obs = pd.DataFrame({"gene": pd.Categorical(["non-targeting", "A", "A"])})
    lab = parse_labels(obs, ObsSpec())
    assert lab.target.tolist() == ["", "A", "A"]
    assert isinstance(lab.keep, np.ndarray) and lab.keep.all()

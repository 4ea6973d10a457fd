"""``gpllm evaluate`` in GEARS' own terms: its h5ad layout (``--preset gears``), its
condition names and ``predict`` keys, and its DE lists in ``uns`` (``--de-key``)."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from scipy.stats import pearsonr

from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.errors import DataError
from gpllm.evaluate import external
from tests.cli.conftest import fails, ok

GENES = [f"G{i}" for i in range(40)]
IDS = [f"ENSG{i:011d}" for i in range(40)]
#: condition -> cells; G3 is measured under both single spellings, as 47 genes are in GEARS' Norman file
#: GEARS conditions that are one perturbation here
POOLED = {"G3": ["G3+ctrl", "ctrl+G3"]}
CELLS = {
    "ctrl": 40,
    "G1+ctrl": 15,
    "ctrl+G2": 15,
    "G3+ctrl": 10,
    "ctrl+G3": 10,
    "G4+G5": 15,
    "G6+ctrl": 15,
    "G7+G8": 12,
}


def _condition_name(condition: str, cell_type: str = "K562") -> str:
    """GEARS' data_utils.get_DE_genes: '1+1' for any two-part condition, '1' otherwise."""
    return f"{cell_type}_{condition}_{'1+1' if len(condition.split('+')) == 2 else '1'}"


def write_gears_h5ad(path, rng, cells=CELLS) -> ad.AnnData:
    """A GEARS PertData-style h5ad: log1p expression, obs condition / cell_type / condition_name,
    var index = Ensembl-like IDs with var['gene_name'], and both DE dicts in uns (IDs, best first)."""
    conditions = [c for c, n in cells.items() for _ in range(n)]
    shift = {c: rng.normal(0, 1.0, len(GENES)) for c in cells}
    rates = np.array([np.exp(1.0 + shift[c] * (c != "ctrl")) for c in conditions])
    X = sp.csr_matrix(np.log1p(rng.poisson(rates) * 1.7))  # non-integer: read as log-normalised
    obs = pd.DataFrame(
        {"condition": conditions, "cell_type": "K562"}, index=[f"cell{i}" for i in range(len(conditions))]
    )
    obs["condition_name"] = [_condition_name(c) for c in conditions]
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame({"gene_name": GENES}, index=IDS))
    perturbed = [c for c in cells if c != "ctrl"]
    adata.uns["rank_genes_groups_cov_all"] = {_condition_name(c): list(rng.permutation(IDS)) for c in perturbed}
    adata.uns["top_non_dropout_de_20"] = {_condition_name(c): rng.permutation(IDS)[:20] for c in perturbed}
    adata.write_h5ad(path)
    return adata


def gears_reference(adata: ad.AnnData, pred: dict[str, np.ndarray], key: str, spelling: dict[str, str]):
    """GEARS' pearson_delta_de and mse_de per perturbation, straight from the file (NumPy/SciPy):
    truth = mean of the condition's cells (POOLED spellings together), DE = first 20 IDs of the
    list of the prediction's own spelling."""
    X = adata.X.toarray()
    cond = adata.obs["condition"].to_numpy()
    ctrl = X[cond == "ctrl"].mean(axis=0)
    position = {g: i for i, g in enumerate(adata.var_names)}
    out = {}
    for pert, y_pred in pred.items():
        cells = np.isin(cond, POOLED.get(pert, [spelling[pert]]))
        truth = X[cells].mean(axis=0)
        de = [position[g] for g in list(adata.uns[key][_condition_name(spelling[pert])])[:20]]
        out[pert] = (pearsonr(y_pred[de] - ctrl[de], truth[de] - ctrl[de])[0], np.mean((y_pred[de] - truth[de]) ** 2))
    return out


@pytest.fixture(scope="module")
def gears_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gears") / "perturb_processed.h5ad"
    return path, write_gears_h5ad(path, np.random.default_rng(3))


@pytest.mark.slow
@pytest.mark.parametrize("key", external.GEARS_DE_KEYS)
def test_de_metrics_use_gears_lists_and_gears_names(gears_file, tmp_path, key):
    path, adata = gears_file
    X, cond = adata.X.toarray(), adata.obs["condition"].to_numpy()
    rng = np.random.default_rng(4)
    # the file's own names in each of GEARS' forms: condition_name, predict key, condition, pair 'A_B'
    names = {"G1": "K562_G1+ctrl_1+1", "G2": "G2", "G3": "ctrl+G3", "G4+G5": "G5_G4", "G6": "G6+ctrl"}
    spelling = {"G1": "G1+ctrl", "G2": "ctrl+G2", "G3": "ctrl+G3", "G4+G5": "G4+G5", "G6": "G6+ctrl"}
    pred = {p: X[np.isin(cond, list(CELLS))].mean(axis=0) + rng.normal(0, 0.3, len(GENES)) for p in names}
    file = tmp_path / "pred.h5ad"
    ad.AnnData(
        X=np.stack(list(pred.values())), obs=pd.DataFrame(index=list(names.values())), var=pd.DataFrame(index=GENES)
    ).write_h5ad(file)
    result = ok("evaluate", file, "--truth", path, "--preset", "gears", "--de-key", key, "--out", tmp_path / "rows.csv")
    rows = pl.read_csv(tmp_path / "rows.csv")
    assert sorted(rows["pert"].to_list()) == sorted(names)
    want = gears_reference(adata, pred, key, spelling)
    for pert, pearson, mse in rows.select("pert", "pearson_de", "mse_de").iter_rows():
        assert pearson == pytest.approx(want[pert][0], abs=1e-10), pert
        assert mse == pytest.approx(want[pert][1], rel=1e-10), pert
    assert f"the first 20 of GEARS' uns['{key}']" in result.stdout


def _one_row_prediction(folder) -> Path:
    """pred.h5ad in ``folder``: one perturbation, G1, predicted as all ones over GENES (1 x 40)."""
    file = folder / "pred.h5ad"
    ad.AnnData(X=np.ones((1, len(GENES))), obs=pd.DataFrame(index=["G1"]), var=pd.DataFrame(index=GENES)).write_h5ad(
        file
    )
    return file


def test_without_de_key_the_truths_own_de_genes_are_named(gears_file, tmp_path):
    path, adata = gears_file
    file = _one_row_prediction(tmp_path)
    result = ok("evaluate", file, "--truth", path, "--preset", "gears")
    assert "DE genes (pearson_de, mae_de, mse_de): the truth's own top 20" in result.stdout


def test_a_missing_de_key_names_what_the_file_has(gears_file, tmp_path):
    path, _ = gears_file
    file = _one_row_prediction(tmp_path)
    fails(
        "evaluate",
        file,
        "--truth",
        path,
        "--preset",
        "gears",
        "--de-key",
        "top_non_zero_de_20",
        naming="uns has no 'top_non_zero_de_20' (it has ",
    )


def _truth(perts=("A", "A+B", "C_D")) -> PerturbationData:
    rng = np.random.default_rng(0)
    return PerturbationData(
        Y=rng.normal(size=(len(perts), 30)),
        ctrl=np.zeros(30),
        de=np.tile(np.arange(20), (len(perts), 1)),
        perts=perts,
        genes=tuple(f"G{i}" for i in range(30)),
    )


@pytest.mark.parametrize(
    ("raw", "name"),
    [("K562_A+ctrl_1+1", "A"), ("A549_ctrl+A_1+1", "A"), ("K562_A+B_1+1", "A+B"), ("my_cells_A+B_1+1", "A+B")],
)
def test_gears_condition_names_are_read(raw, name):
    assert external.normalise_name(raw) == name


def test_gears_predict_keys_match_pairs_unless_the_truth_has_the_name():
    got = external.match_names(["B_A", "A", "C_D", "X_Y"], _truth().perts)
    assert got == ("A+B", "A", "C_D", "X_Y")  # 'C_D' is a truth name as it stands; 'X_Y' is unknown


def test_one_perturbation_predicted_twice_is_refused():
    truth = _truth()
    pred = external.PredictionTable(("A+B", "B+A"), truth.genes, truth.Y[[1, 1]], None, "pred.h5ad")
    with pytest.raises(DataError, match="duplicated"):
        external.align_to_truth(pred, truth)


def _gears_layout_of_devel_cells(raw, out) -> ad.AnnData:
    """The shared real Norman 2019 cells rewritten as GEARS' PertData does: singles as 'A+ctrl'
    (every other gene 'ctrl+A'), Ensembl-like var_names with var['gene_name'], and the DE lists
    of data_utils.get_DE_genes / get_dropout_non_zero_genes (scanpy's ranking against ctrl)."""
    import scanpy as sc

    cells = ad.read_h5ad(raw)
    cells = cells[cells.obs["dataset"].astype(str) == "norman19"].copy()
    singles = sorted({c for c in cells.obs["condition"].astype(str) if "+" not in c and c != "control"})
    flip = set(singles[1::2])
    condition = [
        ("ctrl" if c == "control" else f"ctrl+{c}" if c in flip else f"{c}+ctrl" if "+" not in c else c)
        for c in cells.obs["condition"].astype(str)
    ]
    obs = pd.DataFrame({"condition": condition, "cell_type": "K562"}, index=cells.obs_names)
    obs["condition_name"] = [_condition_name(c) for c in condition]
    var = pd.DataFrame({"gene_name": list(cells.var_names)}, index=[f"ENSG{i:011d}" for i in range(cells.n_vars)])
    gears = ad.AnnData(X=sp.csr_matrix(cells.X), obs=obs, var=var)
    sc.tl.rank_genes_groups(
        gears, groupby="condition_name", reference="K562_ctrl_1", rankby_abs=True, n_genes=gears.n_vars, use_raw=False
    )
    ranked = pd.DataFrame(gears.uns.pop("rank_genes_groups")["names"])
    X = gears.X.toarray()
    ctrl = X[obs["condition"].to_numpy() == "ctrl"].mean(axis=0)
    position = {g: i for i, g in enumerate(gears.var_names)}
    non_dropout = {}
    for name in ranked:
        mean = X[obs["condition_name"].to_numpy() == name].mean(axis=0)
        keep = (mean != 0) | (ctrl == 0)
        non_dropout[name] = np.array([g for g in ranked[name] if keep[position[g]]][:20])
    gears.uns["rank_genes_groups_cov_all"] = {name: ranked[name].tolist() for name in ranked}
    gears.uns["top_non_dropout_de_20"] = non_dropout
    gears.write_h5ad(out)
    return gears


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")  # inside scanpy
def test_gears_de_lists_on_the_real_norman_cells(shared_data, tmp_path):
    gears = _gears_layout_of_devel_cells(shared_data / "norman19_mcfaline23_devel.h5ad", tmp_path / "gears.h5ad")
    X, cond = gears.X.toarray(), gears.obs["condition"].to_numpy()
    rng = np.random.default_rng(5)
    spelling = {external.canonical(external.normalise_name(c)): c for c in set(cond) if c != "ctrl"}  # pairs sorted
    pred = {p: X[cond == c].mean(axis=0) + rng.normal(0, 0.05, gears.n_vars) for p, c in spelling.items()}
    keys = [p.replace("+", "_") for p in pred]  # GEARS' predict() keys: 'A', 'A_B'
    file = tmp_path / "pred.h5ad"
    ad.AnnData(
        X=np.stack(list(pred.values())),
        obs=pd.DataFrame(index=keys),
        var=pd.DataFrame(index=list(gears.var["gene_name"])),
    ).write_h5ad(file)
    for key in external.GEARS_DE_KEYS:
        ok(
            "evaluate",
            file,
            "--truth",
            tmp_path / "gears.h5ad",
            "--preset",
            "gears",
            "--de-key",
            key,
            "--out",
            tmp_path / f"{key}.csv",
        )
        rows = pl.read_csv(tmp_path / f"{key}.csv")
        assert rows.height == len(pred) == 33
        ctrl = X[cond == "ctrl"].mean(axis=0)
        position = {g: i for i, g in enumerate(gears.var_names)}
        for pert, pearson, mse in rows.select("pert", "pearson_de", "mse_de").iter_rows():
            de = [position[g] for g in list(gears.uns[key][_condition_name(spelling[pert])])[:20]]
            truth = X[cond == spelling[pert]].mean(axis=0)
            assert pearson == pytest.approx(pearsonr(pred[pert][de] - ctrl[de], truth[de] - ctrl[de])[0], abs=1e-10)
            assert mse == pytest.approx(np.mean((pred[pert][de] - truth[de]) ** 2), rel=1e-10)


def test_a_pair_measured_in_both_orders_is_scored_against_its_pooled_cells(tmp_path):
    path = tmp_path / "both_orders.h5ad"
    adata = write_gears_h5ad(path, np.random.default_rng(5), cells={**CELLS, "G5+G4": 12})
    X, cond = adata.X.toarray(), adata.obs["condition"].to_numpy()
    pooled = X[np.isin(cond, ["G4+G5", "G5+G4"])].mean(axis=0)  # 15 + 12 cells
    guess = pooled + np.random.default_rng(6).normal(0, 0.3, len(GENES))
    file = tmp_path / "pred.h5ad"
    ad.AnnData(X=guess[None, :], obs=pd.DataFrame(index=["G4+G5"]), var=pd.DataFrame(index=GENES)).write_h5ad(file)
    result = ok("evaluate", file, "--truth", path, "--preset", "gears", "--out", tmp_path / "rows.csv")
    rows = pl.read_csv(tmp_path / "rows.csv")
    assert rows["pert"].to_list() == ["G4+G5"]
    assert rows["mae_all"][0] == pytest.approx(np.mean(np.abs(guess - pooled)), rel=1e-10)
    assert (
        "1 pair(s) measured in both gene orders were scored against their cells pooled: "
        "G4+G5 (rows labelled 'G4+G5': 15, 'G5+G4': 12)" in result.stdout
    )


def test_a_processed_truth_with_both_orders_is_matched_exactly_or_refused():
    truth = _truth(("A", "A+B", "B+A"))
    assert external.match_names(["B+A", "A+B", "A"], truth.perts) == ("B+A", "A+B", "A")
    with pytest.raises(DataError, match=r"prediction 'A_B' matches the truth's \['A\+B', 'B\+A'\]"):
        external.match_names(["A_B"], truth.perts, "pred.h5ad")


def test_a_de_list_repeating_a_gene_names_the_file_key_and_condition(tmp_path):
    path = tmp_path / "repeats.h5ad"
    adata = write_gears_h5ad(path, np.random.default_rng(7))
    lists = dict(adata.uns["rank_genes_groups_cov_all"])
    lists["K562_G1+ctrl_1+1"] = [IDS[0], IDS[0], *IDS[2:]]
    adata.uns["rank_genes_groups_cov_all"] = lists
    adata.write_h5ad(path)
    file = _one_row_prediction(tmp_path)
    fails(
        "evaluate",
        file,
        "--truth",
        path,
        "--preset",
        "gears",
        "--de-key",
        "rank_genes_groups_cov_all",
        naming=f"{path}: uns['rank_genes_groups_cov_all']: 1 DE list(s) name a gene twice among their first 20, "
        f"e.g. 'K562_G1+ctrl_1+1' repeats '{IDS[0]}'",
    )

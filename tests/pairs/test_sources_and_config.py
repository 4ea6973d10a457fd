"""The registered Norman 2019 downloads (served from a loopback server in GEARS' layout) and the
combos configs: schema, dispatch, and a tiny synthetic `gpllm reproduce` run."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gpllm.configs import check_config
from gpllm.data.screens.labels import GEARS, NORMAN_SCPERTURB
from gpllm.data.screens.pairs import pair_screen
from gpllm.data.screens.perturbseq import read_screen, screen_from_anndata
from gpllm.data.sources.registry import REGISTRY, fetch
from gpllm.errors import ChecksumError, InputError
from gpllm.reproduce import ReproduceConfig
from tests.data.loopback import Loopback

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _cells(labels, column, *, gene_col=None, seed=0):
    """Counts for cells with the given condition labels: each condition lifts its own 5 genes."""
    rng = np.random.default_rng(seed)
    n_genes = 60
    mu = np.full((len(labels), n_genes), 2.0)
    for i, label in enumerate(labels):
        if label not in ("ctrl", "control"):
            mu[i, rng.choice(n_genes, 5, replace=False)] *= 4
    X = rng.poisson(mu).astype(np.float32)
    var = pd.DataFrame(index=[f"ENSG{j:05d}" for j in range(n_genes)])
    if gene_col:
        var[gene_col] = [f"G{j}" for j in range(n_genes)]
    return ad.AnnData(
        X=sp.csr_matrix(X), obs=pd.DataFrame({column: labels}, index=[f"c{i}" for i in range(len(labels))]), var=var
    )


GEARS_CONDITIONS = ["ctrl"] * 40 + [c for c in ("A+ctrl", "ctrl+B", "C+ctrl", "A+B", "B+C", "A+C+D") for _ in range(12)]


def test_the_gears_norman_entry_is_registered_with_published_figures():
    src = REGISTRY["norman-gears"]
    assert src.verified and src.size == 168_758_985 and src.member == "perturb_processed.h5ad"
    assert "md5:cdc41d6050e619c37fd9dd44d440e2b4" in src.checksums
    assert REGISTRY["norman-scperturb"].verified and "not verified here" in REGISTRY["norman-scperturb"].notes


def test_gears_layout_fetched_from_loopback_reads_as_pairs(tmp_path):
    """The registry entry with its URL and checksums pointed at a local copy in GEARS' layout:
    download, verify, extract the member, read it with the gears preset, link the pairs."""
    h5ad = tmp_path / "src.h5ad"
    _cells(GEARS_CONDITIONS, "condition", gene_col="gene_name").write_h5ad(h5ad)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(h5ad, "norman/perturb_processed.h5ad")
        zf.writestr("norman/go.csv", "a,b\n")
    archive = buf.getvalue()
    with Loopback() as server:
        server.files["norman.zip"] = archive
        src = dataclasses.replace(
            REGISTRY["norman-gears"],
            url=server.url("norman.zip"),
            size=len(archive),
            checksums=(f"md5:{hashlib.md5(archive).hexdigest()}",),
        )
        got = fetch(src, tmp_path / "cache", progress=False)
        bad = dataclasses.replace(src, checksums=("md5:" + "0" * 32,))
        with pytest.raises(ChecksumError):
            fetch(bad, tmp_path / "other", progress=False)
    screen = read_screen(got.path, GEARS, n_de=5)
    pairs = pair_screen(screen.singles, screen.combos)
    assert set(screen.singles.perts) == {"A", "B", "C"}  # 'ctrl+B' is B
    assert pairs.pairs.perts == ("A+B", "B+C") and pairs.set_apart == ("A+C+D",)
    assert pairs.single_rows.min() >= 0


def test_scperturb_layout_joins_pairs_with_underscore():
    labels = ["control"] * 40 + [c for c in ("A", "B", "C", "A_B", "C_B") for _ in range(12)]
    screen = screen_from_anndata(_cells(labels, "perturbation"), NORMAN_SCPERTURB, n_de=5)
    assert pair_screen(screen.singles, screen.combos).pairs.perts == ("A+B", "B+C")


# ------------------------------------------------------------------- configs
def test_combos_configs_pass_the_schema_and_dispatch():
    for name in ("combos.toml", "norman_combos.toml"):
        cfg = ReproduceConfig.from_toml(EXPERIMENTS / name)
        assert cfg.combos is not None
    with pytest.raises(InputError, match="n_fold"):
        check_config({"combos": {"n_fold": 3}})
    with pytest.raises(InputError, match="interaction_strength"):
        check_config({"data": {"kind": "synthetic", "overrides": {"interaction_strength": 1.0}}})  # grid: no pairs
    check_config({"combos": {}, "data": {"kind": "synthetic", "overrides": {"interaction_strength": 1.0}}})


@pytest.mark.slow
def test_tiny_synthetic_combos_reproduction(tmp_path):
    from gpllm.reproduce import reproduce

    cfg = ReproduceConfig.from_dict(
        {
            "name": "tiny",
            "embeddings": ["text"],
            "pca_k": 4,
            "data": {
                "kind": "synthetic",
                "seed": 1,
                "overrides": {"n_perts": 24, "n_genes": 30, "n_pairs": 20, "text_dim": 16, "seq_dim": 16, "hidden": 8},
            },
            "combos": {"n_folds": 2, "models": ["additive", "ridge_summed"]},
        }
    )
    run = reproduce(cfg, tmp_path, progress=False)
    assert set(run.results["model"].unique()) == {"additive", "ridge_summed"}
    assert run.report["figure"].is_file() and "seen 1" in run.report["table_md"].read_text()
    with pytest.raises(InputError, match="unknown \\['gp'\\]"):
        reproduce(dataclasses.replace(cfg, combos={"models": ["gp"]}), tmp_path / "x", progress=False)


@pytest.mark.slow
def test_cli_prints_the_seen_tables_and_refuses_grid_options(tmp_path):
    from tests.cli.conftest import fails, ok

    config = tmp_path / "tiny.toml"
    config.write_text(
        'name = "tiny"\nembeddings = ["text"]\npca_k = 4\n[data]\nkind = "synthetic"\nseed = 2\n'
        "[data.overrides]\nn_perts = 24\nn_genes = 30\nn_pairs = 20\ntext_dim = 16\nseq_dim = 16\nhidden = 8\n"
        '[combos]\nn_folds = 2\nmodels = ["additive", "knn_summed"]\n'
    )
    out = ok("reproduce", "--config", config, "--out", tmp_path / "run", "--no-progress").output
    assert "seen 0" in out and "seen 2" in out and "knn_summed" in out
    fails(
        "reproduce", "--config", config, "--out", tmp_path / "r2", "--folds", "3", naming="[combos] config sets its own"
    )

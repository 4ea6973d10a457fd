"""Small Perturb-seq screens built in-process: negative-binomial counts with known effects."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


def nb_screen(
    perts: tuple[str, ...] = ("AAK1", "BRCA1", "CDK2", "DDX3X", "EIF3A", "FOXO1"),
    *,
    n_per: int = 25,
    n_ctrl: int = 60,
    combos: tuple[str, ...] = (),
    n_genes: int = 150,
    pert_col: str = "gene",
    control: str = "non-targeting",
    sparse: bool = True,
    seed: int = 0,
) -> ad.AnnData:
    """AnnData of cells x genes with integer NB counts (float32), rows shuffled.

    Each perturbation (and combo 'A+B') multiplies the mean of its own 8 genes by
    4 or 1/4, so DE genes exist; library sizes vary 4-fold so normalisation matters.
    obs[pert_col] names the perturbation, ``control`` marks control cells.
    """
    rng = np.random.default_rng(seed)
    labels = [control] * n_ctrl + [p for p in (*perts, *combos) for _ in range(n_per)]
    n = len(labels)
    base = rng.gamma(0.6, 3.0, n_genes)
    mu = np.tile(base, (n, 1))
    effects = {p: (rng.choice(n_genes, 8, replace=False), rng.choice([0.25, 4.0], 8)) for p in (*perts, *combos)}
    for i, label in enumerate(labels):
        if label in effects:
            genes, fold = effects[label]
            mu[i, genes] *= fold
    mu *= rng.uniform(0.5, 2.0, n)[:, None]
    r = 2.0
    X = rng.negative_binomial(r, r / (r + mu)).astype(np.float32)
    order = rng.permutation(n)
    obs = pd.DataFrame(
        {pert_col: np.asarray(labels, dtype=object)[order]},
        index=pd.Index([f"cell{i:04d}" for i in range(n)]),
    )
    var = pd.DataFrame(index=pd.Index([f"G{j:03d}" for j in range(n_genes)]))
    X = X[order]
    return ad.AnnData(X=sp.csr_matrix(X) if sparse else X, obs=obs, var=var)


@pytest.fixture
def make_screen():
    """The :func:`nb_screen` factory."""
    return nb_screen


@pytest.fixture
def cells() -> ad.AnnData:
    """Default screen: 6 single-gene perturbations x 25 cells + 60 controls, 150 genes."""
    return nb_screen()


def scanpy_lognorm(adata: ad.AnnData, target_sum: float = 1e4) -> ad.AnnData:
    """Independent reference: scanpy's normalize_total + log1p on a float64 copy."""
    import scanpy as sc

    ref = adata.copy()
    ref.X = ref.X.astype(np.float64)
    sc.pp.normalize_total(ref, target_sum=target_sum)
    sc.pp.log1p(ref)
    return ref


def dense(X) -> np.ndarray:
    """X as a dense float64 array."""
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def groupby_mean(X, labels) -> pd.DataFrame:
    """Independent reference: pandas groupby mean of the rows of X by label."""
    return pd.DataFrame(dense(X)).groupby(np.asarray(labels)).mean()

"""Write a synthetic draw into the real sources' file formats, so the real loaders run end to end.

From :func:`gpllm.data.synthetic.screens.make_screens`'s output this writes

* per cell line, a Replogle 2022 bulk h5ad (``K562_essential_raw_bulk_01.h5ad``
  layout): X dense float32, one row per target transcript, the mean raw UMI
  count per cell (fractional); obs index ``gene_transcript``
  (``<n>_<GENE>_<P1|P2>_<ENSG...>``, controls ``<n>_non-targeting_non-targeting_non-targeting``),
  obs ``core_control``, ``num_cells_filtered``, ``num_cells_unfiltered``; var index
  ``gene_id`` (Ensembl-like IDs) with a ``gene_name`` column. The quirks the
  bulk reader must handle are there: controls and some perturbations span
  several rows of unequal cell counts (pooling weighted by
  ``num_cells_filtered`` recovers the profile exactly), and each
  perturbation has its own sequencing depth (undone by normalisation);
* optionally, per cell line, Replogle-style single cells (:func:`sample_cells`);
* the text vectors as a GenePT pickle, the sequence vectors as a UniProt
  ``per-protein.h5`` keyed by invented accessions (``Q`` + 5 digits) with a
  3-column ``idmapping.dat``; as in UniProt, some genes list a first accession
  that has no embedding, and some proteins have no gene name.

Bulk rows are ``depth * expm1(Y) / target_sum`` (Y the draw's noisy
profiles), so reading them back through
:func:`gpllm.data.screens.perturbseq.read_screen` with the ``REPLOGLE_BULK`` spec
returns the draw's ``Y`` and ``ctrl`` up to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpllm.atomic import write_h5ad
from gpllm.data.embeddings.files import write_genept_pickle, write_prott5_h5, write_uniprot_idmapping
from gpllm.data.sources.registry import REGISTRY
from gpllm.data.synthetic.screens import SyntheticScreens
from gpllm.errors import InputError

#: Control label of the Replogle files.
CONTROL = "non-targeting"
_CONTROL_ID = "non-targeting_non-targeting_non-targeting"


def replogle_filename(line: str, kind: str) -> str:
    """The real file name for ``line`` (``kind`` 'bulk' or 'cells'), as the registry has it."""
    src = REGISTRY.get(f"replogle-{line.lower()}-{kind}")
    if src is not None:
        return src.filename
    return f"{line}_raw_{'bulk' if kind == 'bulk' else 'singlecell'}_01.h5ad"


def ensembl_ids(symbols) -> dict[str, str]:
    """Invented, stable Ensembl-style IDs: the i-th symbol in sorted order -> ``ENSG9...i``."""
    return {s: f"ENSG{90_000_000_000 + i:011d}" for i, s in enumerate(sorted(set(symbols)))}


def _split_rows(profile: np.ndarray, n_cells: int, k: int, rng: np.random.Generator):
    """``k`` rows (k, G) and cell counts (k,) whose count-weighted mean is exactly ``profile`` (G,).

    Rows are profile * (1 + E) with |E| <= 0.3 and weighted-centred, so all
    rows stay positive and only correct weighted pooling gives ``profile`` back.
    """
    k = max(1, min(k, n_cells))
    w = rng.multinomial(n_cells - k, np.full(k, 1.0 / k)) + 1  # every row has >= 1 cell
    E = 0.15 * np.tanh(rng.standard_normal((k, profile.shape[0])))
    E -= (w @ E) / w.sum()
    return profile * (1.0 + E), w


def _var(synthetic: SyntheticScreens):
    import pandas as pd

    genes = list(synthetic.truth.genes)
    ids = ensembl_ids((*synthetic.truth.perts, *genes))
    return pd.DataFrame({"gene_name": genes}, index=pd.Index([ids[g] for g in genes], name="gene_id"))


def _check_line(synthetic: SyntheticScreens, line: str) -> None:
    if line not in synthetic.screens:
        raise InputError(f"no cell line {line!r} in the synthetic draw; lines: {sorted(synthetic.screens)}")


def bulk_anndata(synthetic: SyntheticScreens, line: str, seed: int = 0, two_row_frac: float = 0.05):
    """Replogle-style bulk AnnData of ``line`` (see the module docstring): rows x G, float32 mean counts.

    ``two_row_frac`` of the perturbations get a second transcript row (P2),
    the controls span 4 rows.
    """
    import anndata as ad
    import pandas as pd

    _check_line(synthetic, line)
    truth, screen = synthetic.truth, synthetic.screens[line]
    cfg = truth.config
    rng = np.random.default_rng([seed, truth.seed, 1])
    ids = ensembl_ids((*truth.perts, *truth.genes))
    # mean UMIs per cell; each perturbation its own depth (knockdowns change library size)
    depth = cfg.depth * np.exp(0.1 * rng.standard_normal(len(screen.perts)))
    counts = depth[:, None] * np.expm1(screen.Y) / cfg.target_sum
    n_cells = np.asarray(truth.n_cells[line])
    two = rng.random(len(screen.perts)) < two_row_frac
    rows, weights, names, is_ctrl = [], [], [], []
    for p, pert in enumerate(screen.perts):
        X, w = _split_rows(counts[p], int(n_cells[p]), 2 if two[p] else 1, rng)
        for r in range(len(w)):
            names.append(f"{len(names) + 1}_{pert}_P{r + 1}_{ids[pert]}")
        rows.append(X)
        weights.append(w)
        is_ctrl.extend([False] * len(w))
    ctrl_counts = cfg.depth * np.expm1(screen.ctrl) / cfg.target_sum
    X, w = _split_rows(ctrl_counts, int(truth.n_ctrl_cells[line]), 4, rng)
    first = len(names) + 1
    names.extend(f"{first + r}_{_CONTROL_ID}" for r in range(len(w)))
    rows.append(X)
    weights.append(w)
    is_ctrl.extend([True] * len(w))
    w = np.concatenate(weights)
    obs = pd.DataFrame(
        {
            "core_control": np.array(is_ctrl),
            "num_cells_filtered": w.astype(np.int64),
            "num_cells_unfiltered": (w + rng.poisson(0.05 * w)).astype(np.int64),
        },
        index=pd.Index(names, name="gene_transcript"),
    )
    return ad.AnnData(X=np.vstack(rows).astype(np.float32), obs=obs, var=_var(synthetic))


def _barcodes(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct 10x-style barcodes: 16 bases, '-1' suffix."""
    codes = rng.choice(4**16, size=n, replace=False)
    digits = (codes[:, None] // 4 ** np.arange(15, -1, -1)) % 4
    return ["".join("ACGT"[d] for d in row) + "-1" for row in digits]


def sample_cells(
    synthetic: SyntheticScreens,
    line: str,
    cells_per_pert: int | None = 20,
    seed: int = 0,
    n_ctrl: int | None = None,
):
    """Replogle-style raw single cells of ``line``: an AnnData of integer UMI counts (float32, dense).

    Perturbation p gets min(n_p, ``cells_per_pert``) cells (all n_p if None),
    the controls ``n_ctrl`` (default min(true count, 10 * ``cells_per_pert``)).
    Cell c of p: depth d_c ~ depth * LogNormal(0, 0.3^2), counts ~ NB with
    mean d_c * expm1(Y_true[p]) / target_sum and over-dispersion phi
    (gamma-Poisson), so the normalised, log1p'd pseudobulk approaches
    ``truth.Y_true`` (``truth.baseline`` for controls) as cells grow.
    obs: gene, gene_id, transcript, gene_transcript, sgID_AB, gem_group, UMI_count.
    """
    import anndata as ad
    import pandas as pd

    _check_line(synthetic, line)
    truth = synthetic.truth
    cfg = truth.config
    if cells_per_pert is not None and cells_per_pert < 1:
        raise InputError(f"cells_per_pert must be >= 1 or None, got {cells_per_pert}")
    rng = np.random.default_rng([seed, truth.seed, 2])
    ids = ensembl_ids((*truth.perts, *truth.genes))
    n_p = np.asarray(truth.n_cells[line])
    if cells_per_pert is not None:
        n_p = np.minimum(n_p, cells_per_pert)
    if n_ctrl is None:
        n_ctrl = (
            truth.n_ctrl_cells[line] if cells_per_pert is None else min(truth.n_ctrl_cells[line], 10 * cells_per_pert)
        )
    profiles = [*np.asarray(truth.Y_true[line]), np.asarray(truth.baseline[line])]
    sizes = [*n_p.tolist(), int(n_ctrl)]
    labels = [*truth.perts, CONTROL]
    blocks, obs_rows = [], []
    for number, (label, y, n) in enumerate(zip(labels, profiles, sizes, strict=True), start=1):
        frac = np.expm1(y) / np.expm1(y).sum()
        d = cfg.depth * np.exp(0.3 * rng.standard_normal(n) - 0.045)
        lam = d[:, None] * frac * rng.gamma(1.0 / cfg.overdispersion, cfg.overdispersion, size=(n, frac.size))
        blocks.append(rng.poisson(lam).astype(np.float32))
        ctrl = label == CONTROL
        gid = CONTROL if ctrl else ids[label]
        guides = rng.integers(0, 2, n) if not ctrl else rng.integers(0, 50, n)  # 2 guides per gene, many controls
        for g in guides:
            obs_rows.append(
                (
                    label,
                    gid,
                    CONTROL if ctrl else "P1",
                    f"{number}_{_CONTROL_ID}" if ctrl else f"{number}_{label}_P1_{gid}",
                    f"{label}_{g:03d}|{label}_{g:03d}b",
                )
            )
    X = np.vstack(blocks)
    obs = pd.DataFrame(obs_rows, columns=["gene", "gene_id", "transcript", "gene_transcript", "sgID_AB"])
    obs["gem_group"] = rng.integers(1, 49, len(obs))
    obs["UMI_count"] = X.sum(axis=1).astype(np.float64)
    obs.index = pd.Index(_barcodes(len(obs), rng), name="cell_barcode")
    order = rng.permutation(len(obs))  # cells of one perturbation are not contiguous in the real files
    return ad.AnnData(X=X[order], obs=obs.iloc[order], var=_var(synthetic))


def accessions(synthetic: SyntheticScreens, seed: int = 0):
    """Invented UniProt IDs for the sequence vectors.

    Returns (names, mapping, orphans): ``names`` (N,) the accession of each
    row of ``vectors['sequence']``; ``mapping`` symbol -> accessions,
    preferred first, as an ID-mapping file lists them; ``orphans`` accessions
    of proteins with no gene name (in the h5, not in the mapping). About 10%
    of genes list first a second accession with no embedding (an unreviewed
    entry); genes without a sequence vector map to such accessions only.
    """
    vec = synthetic.vectors["sequence"]
    rng = np.random.default_rng([seed, synthetic.truth.seed, 3])
    symbols = sorted({*vec.names, *synthetic.truth.seq_missing})
    n_orphans = max(1, len(symbols) // 50)
    numbers = rng.choice(100_000, size=2 * len(symbols) + n_orphans, replace=False)
    acc = {s: f"Q{numbers[i]:05d}" for i, s in enumerate(symbols)}
    spare = {s: f"Q{numbers[len(symbols) + i]:05d}" for i, s in enumerate(symbols)}
    has_vec = set(vec.names)
    mapping = {}
    for s in symbols:
        if s not in has_vec:
            mapping[s] = (spare[s],)
        elif rng.random() < 0.1:
            mapping[s] = (spare[s], acc[s])
        else:
            mapping[s] = (acc[s],)
    orphans = tuple(f"Q{n:05d}" for n in numbers[2 * len(symbols) :])
    return tuple(acc[s] for s in vec.names), mapping, orphans


def write_files(
    synthetic: SyntheticScreens,
    out_dir: str | Path,
    cells: bool = False,
    cells_per_pert: int | None = 20,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the draw in the real formats into ``out_dir``; returns key -> path.

    Keys: ``'<line>_bulk'`` (and ``'<line>_cells'`` if ``cells``) per cell
    line, ``'text'`` (GenePT pickle), ``'sequence'`` (per-protein.h5),
    ``'idmapping'`` (UniProt idmapping.dat). File names are the real ones.
    ``seed`` drives only the file-level randomness (row splits, depths,
    sampled cells, accessions); the biology is the draw's.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for line in synthetic.screens:
        path = out / replogle_filename(line, "bulk")
        write_h5ad(path, bulk_anndata(synthetic, line, seed))
        paths[f"{line}_bulk"] = path
        if cells:
            path = out / replogle_filename(line, "cells")
            write_h5ad(path, sample_cells(synthetic, line, cells_per_pert, seed), compression="gzip")
            paths[f"{line}_cells"] = path
    paths["text"] = write_genept_pickle(out / REGISTRY["genept-ada"].local_name, synthetic.vectors["text"])
    names, mapping, orphans = accessions(synthetic, seed)
    rng = np.random.default_rng([seed, synthetic.truth.seed, 4])
    vec = synthetic.vectors["sequence"]
    X = np.vstack([vec.X, 0.05 * rng.standard_normal((len(orphans), vec.dim))])
    paths["sequence"] = write_prott5_h5(out / REGISTRY["uniprot-human-prott5"].filename, [*names, *orphans], X)
    paths["idmapping"] = write_uniprot_idmapping(out / "HUMAN_9606_idmapping.dat", mapping)
    return paths

"""The embedded default: a synthetic Perturb-seq screen with the real one's shape and quirks.

Generated in-process from a seed, deterministic, a second at full size
(1774 perturbations x 2000 genes, two cell lines, 1536-d text and 1024-d
sequence embeddings). :data:`SHAPES` names other sizes: ``"gwps"`` is the K562
genome-wide screen's (9,800 x 8,000, one line; its time and memory are on the docs'
Benchmarks page).

Generative model
----------------
Latent gene biology. Each perturbed gene p has a latent vector u_p in R^d
(``latent_dim``): genes belong to pathways (``n_modules`` centroids
c_m ~ N(0, I)); gene p mixes a primary and, with probability 0.4, a secondary
module, u_p = sum_m w_pm c_m + ``within_sd`` * N(0, I).

Response. Measured genes form ``n_programs`` co-regulated programs: gene g
loads ``L[r, g]`` on its program r. For cell line l the log fold change of
perturbation p is

    Delta_p = a_l * s_p * ( kappa_p * b_l * chat_l            common response
                            + A_l(u_p) @ L                    smooth in u_p
                            + xi_p @ L * idio_sd )            idiosyncratic
              + log(k_p) at the target gene, if it is measured  (knockdown)

* A_l(u) = phi(u) H_l is a smooth (RBF-GP-like) function of the latent biology:
  phi are ``n_features`` random Fourier features of an RBF kernel with
  lengthscale ``lengthscale``; H_l = rho H_0 + sqrt(1 - rho^2) H'_l makes the
  two lines share part of their response (``line_corr`` = rho).
* chat_l is a common response (unit RMS, built from two "stress" programs plus
  gene noise) shared by most perturbations: kappa_p ~ 1 + 0.3 N(0, 1) for a
  fraction ``common_frac``, else 0. Its weight b_l (``common_weight``) sets how
  strong the "non-control mean" baseline is (RPE1 stronger than K562, as in
  the paper's Tables 1 and S1).
* s_p = exp(``strength_sd`` * (0.6 g(u_p) + 0.8 N(0,1))) / normaliser: effect
  size, heavy-tailed (few strong responders), partly a smooth function g of u_p.
* xi_p ~ N(0, I): perturbation-specific variation no embedding can predict.
* k_p ~ U(0.1, 0.35): CRISPRi knockdown of the target gene itself, for the
  ``self_measured`` fraction of perturbed genes that are also measured.

Expression. Control expression is mu_lg = exp(N(0, 1)) scaled to sum to
``target_sum`` (log1p(mu) spans about [0, 4]). A perturbation's rates are
m_p = mu * exp(Delta_p); its pseudobulk of n_p cells (n_p ~ 40 + Gamma, median
~120, depth ``depth`` UMIs per cell) gets multiplicative counting noise
exp(N(0, 1/(n_p depth m/target_sum) + phi/n_p)) (Poisson plus NB
over-dispersion ``overdispersion``); Y_p = log1p(target_sum * m_p / sum(m_p)),
i.e. exactly what total-count normalisation and log1p of the pseudobulk gives.

Embeddings. Text sees the latent dims ``text_dims`` plus its own nuisance
factors (what the literature says that has nothing to do with the screen),
through a random tanh layer, projected to 1536 dims with isotropic noise and a
large shared offset, then unit-normalised (as OpenAI ada vectors). Sequence
sees a different subset ``seq_dims`` plus its own nuisance factors through a
sine layer, 1024 dims plus noise (ProtT5-like scale). Each view therefore
sees only part of u_p, non-linearly and noisily; together they see all of it.
A few perturbed genes have no text (``missing_text``) or no sequence
(``missing_seq``) vector, as the real resources.

Files. :func:`gpllm.data.synthetic.files.write_files` writes the same formats as the real sources
(Replogle bulk h5ad layout, GenePT pickle, UniProt per-protein.h5 with an
idmapping TSV, optionally Replogle-style single cells) so the real loaders run
end to end on them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.screens.de import top_k_abs
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.errors import InputError, MemoryLimitError

#: Cell lines of the default screen.
CELL_LINES = ("K562", "RPE1")


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator (see the module docstring for the model)."""

    n_perts: int = 1774
    n_genes: int = 2000
    cell_lines: tuple[str, ...] = CELL_LINES
    latent_dim: int = 12
    n_modules: int = 30
    within_sd: float = 0.45
    n_programs: int = 40
    n_features: int = 256
    lengthscale: float = 2.5
    line_corr: float = 0.7
    # Calibrated so the baselines and GP land near the paper's Tables 1 / S1 (MAE top-20
    # ~0.28, MAE ~0.075-0.11; Pearson top-20 random ~0.1/0.24, non-control mean ~0.43/0.6).
    amplitude: tuple[float, ...] = (0.035, 0.035)
    common_weight: tuple[float, ...] = (0.4, 1.2)
    common_frac: float = 0.85
    common_sd: float = 0.3
    idio_sd: float = 2.0
    strength_sd: float = 0.7
    self_measured: float = 0.1
    target_sum: float = 1e4
    depth: float = 1e4
    overdispersion: float = 0.3
    text_dim: int = 1536
    seq_dim: int = 1024
    text_dims: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    seq_dims: tuple[int, ...] = (5, 6, 7, 8, 9, 10, 11)
    n_nuisance: int = 6
    hidden: int = 96
    text_noise: float = 0.6
    seq_noise: float = 0.6
    missing_text: float = 0.003
    missing_seq: float = 0.01
    n_extra_genes: int = 200
    n_de: int = 20

    def __post_init__(self) -> None:
        if self.n_perts < 2 or self.n_genes < self.n_de or self.n_genes < 2:
            raise InputError(
                f"SyntheticConfig: need n_perts >= 2 and n_genes >= n_de={self.n_de}, "
                f"got {self.n_perts}, {self.n_genes}"
            )
        for name in ("amplitude", "common_weight"):
            if len(getattr(self, name)) != len(self.cell_lines):
                raise InputError(f"SyntheticConfig: {name} needs one value per cell line {self.cell_lines}")
        for name in ("text_dims", "seq_dims"):
            dims = getattr(self, name)
            if not dims or min(dims) < 0 or max(dims) >= self.latent_dim:
                raise InputError(f"SyntheticConfig: {name} must index latent dims [0, {self.latent_dim})")


#: Named shapes of the generator, each a set of :class:`SyntheticConfig` overrides (a config's
#: ``[data] shape``; its ``[data.overrides]`` apply on top): ``essential``, the paper's K562
#: and RPE1 essential-gene screens (the default); ``gwps``, the K562 genome-wide screen
#: (Replogle 2022 GWPS: ~9,800 knocked-down genes, ~8,000 measured), one cell line
#: calibrated as K562.
SHAPES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "essential": MappingProxyType({}),
        "gwps": MappingProxyType(
            {
                "n_perts": 9800,
                "n_genes": 8000,
                "cell_lines": CELL_LINES[:1],
                "amplitude": SyntheticConfig.amplitude[:1],
                "common_weight": SyntheticConfig.common_weight[:1],
            }
        ),
    }
)


def synthetic_config(shape: str = "essential", **overrides) -> SyntheticConfig:
    """The config of the named :data:`SHAPES` entry with ``overrides`` on top (lists, as TOML
    gives them, become tuples); InputError naming the known shapes or knobs."""
    if shape not in SHAPES:
        raise InputError(f"unknown synthetic shape {shape!r}; known: {', '.join(SHAPES)}")
    known = asdict(SyntheticConfig())
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise InputError(f"unknown knob(s) {unknown} of the synthetic generator; known: {sorted(known)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return SyntheticConfig(**{**SHAPES[shape], **overrides})


@dataclass(frozen=True, eq=False)
class SyntheticTruth:
    """The generating parameters and noise-free quantities of one synthetic draw.

    u : (P, d) latent biology of the perturbed genes (``perts`` order).
    module : (P,) primary pathway of each perturbed gene.
    strength : (P,) effect size s_p.  common : (P,) kappa_p.
    program : (G,) program of each measured gene.  loadings : (R, G) L.
    baseline : {line: (G,) control log1p-normalised expression}.
    lfc : {line: (P, G) noise-free log fold changes Delta in rate space}.
    Y_true : {line: (P, G) noise-free log1p-normalised profiles}.
    n_cells : {line: (P,) cells per perturbation}; n_ctrl_cells : {line: int}.
    target_gene : (P,) index of each perturbed gene among the measured genes, -1 if not measured.
    text_missing, seq_missing : perturbed genes without that embedding.
    """

    config: SyntheticConfig
    seed: int
    perts: tuple[str, ...]
    genes: tuple[str, ...]
    u: np.ndarray
    module: np.ndarray
    strength: np.ndarray
    common: np.ndarray
    program: np.ndarray
    loadings: np.ndarray
    baseline: Mapping[str, np.ndarray]
    lfc: Mapping[str, np.ndarray]
    Y_true: Mapping[str, np.ndarray]
    n_cells: Mapping[str, np.ndarray]
    n_ctrl_cells: Mapping[str, int]
    target_gene: np.ndarray
    text_missing: tuple[str, ...]
    seq_missing: tuple[str, ...]


class SyntheticScreens(NamedTuple):
    """``make_screens`` output: screens per cell line, raw embedding vectors, truth."""

    screens: dict[str, PerturbationData]
    vectors: dict[str, GeneVectors]
    truth: SyntheticTruth


# ------------------------------------------------------------------ pieces
def _names(cfg: SyntheticConfig, rng: np.random.Generator):
    """Perturbed gene symbols, measured genes (some perturbed ones among them), extras."""
    perts = [f"SG{i:05d}" for i in range(cfg.n_perts)]
    n_self = min(int(round(cfg.self_measured * cfg.n_perts)), cfg.n_genes)
    self_idx = np.sort(rng.choice(cfg.n_perts, size=n_self, replace=False))
    others = [f"SG{cfg.n_perts + j:05d}" for j in range(cfg.n_genes - n_self)]
    genes = [perts[i] for i in self_idx] + others
    order = rng.permutation(cfg.n_genes)
    genes = [genes[i] for i in order]
    pos = {g: j for j, g in enumerate(genes)}
    target_gene = np.array([pos.get(p, -1) for p in perts], dtype=np.int64)
    extras = [f"SG{cfg.n_perts + cfg.n_genes + j:05d}" for j in range(cfg.n_extra_genes)]
    return perts, genes, target_gene, extras


def _latent(cfg: SyntheticConfig, n: int, rng: np.random.Generator):
    """u (n, d) as mixtures of module centroids; primary module (n,)."""
    C = rng.standard_normal((cfg.n_modules, cfg.latent_dim))
    # uneven pathway sizes, as real pathways: Zipf-like module probabilities
    pm = 1.0 / np.arange(1, cfg.n_modules + 1) ** 0.7
    pm /= pm.sum()
    prim = rng.choice(cfg.n_modules, size=n, p=pm)
    sec = rng.choice(cfg.n_modules, size=n, p=pm)
    has_sec = rng.random(n) < 0.4
    w = rng.uniform(0.6, 0.9, size=n)
    u = C[prim] * np.where(has_sec, w, 1.0)[:, None] + C[sec] * np.where(has_sec, 1 - w, 0.0)[:, None]
    u += cfg.within_sd * rng.standard_normal((n, cfg.latent_dim))
    return u, prim


def _rff(u: np.ndarray, n_features: int, lengthscale: float, rng: np.random.Generator) -> np.ndarray:
    """Random Fourier features phi(u) (n, J) of an RBF kernel: phi(u) phi(v)^T ~ k(u, v)."""
    W = rng.standard_normal((u.shape[1], n_features)) / lengthscale
    b = rng.uniform(0, 2 * np.pi, n_features)
    return np.sqrt(2.0 / n_features) * np.cos(u @ W + b)


def _programs(cfg: SyntheticConfig, rng: np.random.Generator):
    """Program of each gene (G,) and loadings L (R, G): one program per gene, plus a dense trickle."""
    R, G = cfg.n_programs, cfg.n_genes
    prog = rng.integers(0, R, size=G)
    L = 0.08 * rng.standard_normal((R, G))
    # magnitudes near 1: real responses are not dominated by a handful of extreme genes
    L[prog, np.arange(G)] += rng.choice([-1.0, 1.0], size=G) * rng.uniform(0.6, 1.4, size=G)
    return prog, L


def _view(x: np.ndarray, out_dim: int, hidden: int, noise: float, act, rng: np.random.Generator) -> np.ndarray:
    """A noisy non-linear random view of x (n, k): act(x W1 + b1) W2 + noise, (n, out_dim)."""
    k = x.shape[1]
    W1 = rng.standard_normal((k, hidden)) / np.sqrt(k) * 1.5
    b1 = rng.uniform(-1, 1, hidden)
    H = act(x @ W1 + b1)
    H = (H - H.mean(axis=0)) / (H.std(axis=0) + 1e-12)
    W2 = rng.standard_normal((hidden, out_dim)) / np.sqrt(hidden)
    Z = H @ W2
    return Z + noise * rng.standard_normal(Z.shape)


def _embeddings(cfg, u_all, names_all, perts, rng):
    """Text (unit-norm, 1536-d) and sequence (1024-d) GeneVectors; some perturbed genes missing."""
    n = u_all.shape[0]
    out, missing = {}, {}
    for view, dims, dim, noise, act, miss in (
        ("text", cfg.text_dims, cfg.text_dim, cfg.text_noise, np.tanh, cfg.missing_text),
        ("sequence", cfg.seq_dims, cfg.seq_dim, cfg.seq_noise, np.sin, cfg.missing_seq),
    ):
        nuis = rng.standard_normal((n, cfg.n_nuisance))
        x = np.hstack([u_all[:, list(dims)], nuis])
        Z = _view(x, dim, cfg.hidden, noise, act, rng)
        if view == "text":
            # ada vectors share a large common direction (cosine ~0.7 between any two genes)
            offset = rng.standard_normal(dim)
            Z = Z / np.linalg.norm(Z, axis=1, keepdims=True) + 1.2 * offset / np.linalg.norm(offset)
            Z /= np.linalg.norm(Z, axis=1, keepdims=True)
        else:
            Z *= 0.05  # ProtT5 per-protein values are O(0.1)
        n_miss = int(round(miss * len(perts)))
        gone = set(rng.choice(len(perts), size=n_miss, replace=False).tolist()) if n_miss else set()
        keep = [i for i in range(n) if i not in gone]
        out[view] = GeneVectors(tuple(names_all[i] for i in keep), Z[keep], f"synthetic {view}")
        missing[view] = tuple(perts[i] for i in sorted(gone))
    return out, missing


def counting_noise(m: np.ndarray, n_cells, cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """Rates m (..., G) of pseudobulks of ``n_cells`` cells (broadcast against m, not beyond
    its shape) times exp(N(0, 1/(n depth m/sum(m)) + phi/n)): Poisson counting plus NB
    over-dispersion. Two working arrays of m's size (GWPS-sized screens are 0.6 GB each)."""
    sd = m / m.sum(axis=-1, keepdims=True)
    sd *= n_cells * cfg.depth
    np.divide(1.0, sd, out=sd)
    sd += cfg.overdispersion / n_cells
    np.sqrt(sd, out=sd)
    noisy = rng.standard_normal(m.shape)
    noisy *= sd
    np.exp(noisy, out=noisy)
    noisy *= m
    return noisy


def _normalise_log(m: np.ndarray, target_sum: float, out: np.ndarray | None = None) -> np.ndarray:
    """log1p(target_sum * m / rowsum(m)) for rates m (..., G), into ``out`` (may be m itself)."""
    total = m.sum(axis=-1, keepdims=True)
    out = np.multiply(m, target_sum, out=out)
    out /= total
    return np.log1p(out, out=out)


# ------------------------------------------------------------------- public
def peak_bytes(cfg: SyntheticConfig) -> int:
    """Estimated peak bytes of :func:`make_screens`: 3 float64 per (perturbation, gene, cell
    line), 2 per perturbation and embedding column, 16 per gene and feature (fitted to
    tracemalloc's peaks at sizes 200-2000, within 1%)."""
    n_perts = cfg.n_perts + cfg.n_extra_genes
    return 8 * (
        3 * n_perts * cfg.n_genes * len(cfg.cell_lines)
        + 2 * n_perts * (cfg.text_dim + cfg.seq_dim)
        + 16 * cfg.n_genes * cfg.n_features
    )


def check_draw_fits(cfg: SyntheticConfig) -> None:
    """MemoryLimitError, with the estimate, if the draw cannot fit in the host's free memory:
    said at once, instead of a MemoryError minutes later."""
    from gpllm.gp.memory import ENV, GIB, host_budget

    if os.environ.get(ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return
    need, budget = peak_bytes(cfg), host_budget()
    if budget is not None and need > budget.free:
        raise MemoryLimitError(
            f"a synthetic screen of n_perts={cfg.n_perts:,} x n_genes={cfg.n_genes:,} "
            f"({len(cfg.cell_lines)} cell line(s)) needs about {need / GIB:,.1f} GiB, but only "
            f"{budget.free / GIB:.1f} GiB is free ({budget.source}); draw fewer perturbations or genes "
            f"({ENV}=off skips this check)"
        )


def make_screens(seed: int = 0, config: SyntheticConfig | None = None, **overrides) -> SyntheticScreens:
    """Generate the synthetic screens, embeddings and ground truth.

    ``config`` (or keyword overrides of :class:`SyntheticConfig`, e.g.
    ``n_perts=200, n_genes=300``) sets the sizes and knobs; ``seed`` makes the
    draw reproducible. Returns ``SyntheticScreens(screens, vectors, truth)``:
    ``screens[line]`` a PerturbationData (Y (P, G), ctrl (G,), de (P, 20) by
    |x - ctrl|), ``vectors['text'|'sequence']`` GeneVectors keyed by symbol.
    """
    cfg = config if config is not None else SyntheticConfig()
    if overrides:
        cfg = SyntheticConfig(**{**asdict(cfg), **overrides})
    check_draw_fits(cfg)
    rng = np.random.default_rng(seed)
    perts, genes, target_gene, extras = _names(cfg, rng)
    P, G = cfg.n_perts, cfg.n_genes
    perturbed = set(perts)
    names_all = perts + [g for g in genes if g not in perturbed] + extras
    u_all, mod_all = _latent(cfg, len(names_all), rng)
    u, module = u_all[:P], mod_all[:P]
    prog, L = _programs(cfg, rng)
    Lnorm = L / np.sqrt((L**2).sum(axis=0).mean())  # unit mean-square gene loading

    phi = _rff(u, cfg.n_features, cfg.lengthscale, rng)
    g_strength = _rff(u, cfg.n_features, cfg.lengthscale, rng) @ rng.standard_normal(cfg.n_features)
    g_strength /= g_strength.std() + 1e-12
    log_s = cfg.strength_sd * (0.6 * g_strength + 0.8 * rng.standard_normal(P))
    strength = np.exp(log_s - np.median(log_s))
    common = np.where(rng.random(P) < cfg.common_frac, 1.0 + cfg.common_sd * rng.standard_normal(P), 0.0)
    H0 = rng.standard_normal((cfg.n_features, cfg.n_programs))
    xi = rng.standard_normal((P, cfg.n_programs))
    stress = rng.choice(cfg.n_programs, size=2, replace=False)
    kd = rng.uniform(0.1, 0.35, size=P)

    screens, baseline, lfc, Y_true, n_cells, n_ctrl = {}, {}, {}, {}, {}, {}
    base0 = rng.standard_normal(G)
    rho = cfg.line_corr
    # (P, G) arrays are built in place: a GWPS-sized screen's are 0.6 GB each.
    # The idiosyncratic part is the same in every line.
    idio = xi @ Lnorm
    idio /= np.sqrt((idio**2).mean())
    idio *= cfg.idio_sd
    for li, line in enumerate(cfg.cell_lines):
        H = rho * H0 + np.sqrt(1 - rho**2) * rng.standard_normal(H0.shape)
        chat = Lnorm[stress].sum(axis=0) + 0.5 * rng.standard_normal(G)
        chat /= np.sqrt((chat**2).mean())
        D = phi @ H @ Lnorm  # the smooth part
        D /= np.sqrt((D**2).mean())
        D += (cfg.common_weight[li] * common[:, None]) * chat
        D += idio
        D *= cfg.amplitude[li] * strength[:, None]
        # responses saturate: no gene moves by more than a factor e^4 (~55)
        D /= 4.0
        np.tanh(D, out=D)
        D *= 4.0
        hit = target_gene >= 0
        D[np.flatnonzero(hit), target_gene[hit]] = np.log(kd[hit])
        # line-specific baseline, correlated 0.8 across lines
        mu = np.exp(0.8 * base0 + 0.6 * rng.standard_normal(G))
        mu *= cfg.target_sum / mu.sum()
        m = np.exp(D)
        m *= mu
        n_p = (40 + rng.gamma(4.0, 20.0, size=P)).astype(np.int64)
        n_c = int(rng.integers(8000, 12000))
        m_obs = counting_noise(m, n_p[:, None], cfg, rng)
        mu_obs = counting_noise(mu, n_c, cfg, rng)
        Y = _normalise_log(m_obs, cfg.target_sum, out=m_obs)
        del m_obs
        ctrl = _normalise_log(mu_obs, cfg.target_sum)
        de = top_k_abs(Y - ctrl, cfg.n_de)
        screens[line] = PerturbationData(
            Y=Y,
            ctrl=ctrl,
            de=de,
            perts=tuple(perts),
            genes=tuple(genes),
            provenance={
                "source": f"synthetic(seed={seed}, line={line})",
                "input_kind": "synthetic pseudobulk",
                "normalisation": f"generated as log1p of total-count-normalised ({cfg.target_sum:g}) pseudobulk",
                "hvg_flavor": "none (all generated genes are variable)",
                "n_hvg": G,
                "de_method": "abs-delta",
                "n_de": cfg.n_de,
                "steps": ["gpllm.data.synthetic.screens.make_screens"],
            },
        )
        del Y  # the screen holds its own copy
        baseline[line] = _normalise_log(mu, cfg.target_sum)
        lfc[line] = D
        Y_true[line] = _normalise_log(m, cfg.target_sum, out=m)
        n_cells[line] = n_p
        n_ctrl[line] = n_c

    del idio
    vectors, missing = _embeddings(cfg, u_all, names_all, perts, rng)
    truth = SyntheticTruth(
        config=cfg,
        seed=seed,
        perts=tuple(perts),
        genes=tuple(genes),
        u=u,
        module=module,
        strength=strength,
        common=common,
        program=prog,
        loadings=L,
        baseline=baseline,
        lfc=lfc,
        Y_true=Y_true,
        n_cells=n_cells,
        n_ctrl_cells=n_ctrl,
        target_gene=target_gene,
        text_missing=missing["text"],
        seq_missing=missing["sequence"],
    )
    return SyntheticScreens(screens, vectors, truth)

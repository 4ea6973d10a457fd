"""A synthetic two-gene screen with known interactions, on the single-gene generator's biology.

The singles are exactly :func:`gpllm.data.synthetic.screens.make_screens`'s draw
for one cell line (same seed, same latent gene vectors u_p, pathways, programs,
embeddings). Pairs are added on top, from a separate random stream:

    delta_ab = delta_a + delta_b + s * I_ab,      Y_ab = max(ctrl + delta_ab, floor) + counting noise

with delta_p = Y_true_p - ctrl the noise-free single responses in log-expression
space (so "additive" means what the additive baseline ctrl + delta_a + delta_b
assumes) and s the ``interaction_strength`` knob. The interaction's class is
set by the latent biology of the two genes:

* buffering: a and b share their primary pathway (redundant members):
  I = -(delta_a + delta_b) / 2, so at s = 1 the pair does what one of them does;
* synergy: their pathways are coupled (a random symmetric set of pathway pairs,
  ``coupling`` of them): I = (delta_a + delta_b) / 2 + nu_ab, an amplified and a
  new response nu_ab = ((phi(u_a) * phi(u_b)) H) @ L, phi the RBF random
  features of the generator, so nu is a smooth symmetric function of (u_a, u_b)
  that a product kernel k(a, c) k(b, d) can learn;
* independent: any other two pathways: I = 0.

Which pairs were "screened" is drawn per class (``frac_buffering``,
``frac_synergy``, the rest independent), as Norman et al. chose pairs within and
across programs. Counting noise is the generator's (cells per pair drawn as for
singles). At s = 0 the noise-free pair is exactly additive except where the
floor bites: no gene falls below 1% of its control rate (two knockdowns of one
gene cannot reach zero expression); such entries are counted in the truth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np

from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.screens.de import top_k_abs
from gpllm.data.screens.pairs import SEP, PairScreen, pair_screen
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.data.synthetic.screens import SyntheticConfig, SyntheticTruth, _rff, counting_noise, make_screens
from gpllm.errors import InputError

#: Interaction classes of the generator, in this order in ``PairTruth.cls``.
CLASSES = ("buffering", "synergy", "independent")
#: No gene falls below this fraction of its control rate (two knockdowns of one gene cannot reach zero).
FLOOR = 0.01


@dataclass(frozen=True)
class PairConfig:
    """Knobs of the pair generator; the singles' come from :class:`SyntheticConfig`.

    n_perts / n_genes: perturbed genes (each with a single) and measured genes.
    n_pairs: two-gene conditions drawn. interaction_strength: s >= 0 (0: additive).
    frac_buffering, frac_synergy: shares of pairs drawn from each class (the rest independent).
    coupling: share of pathway pairs whose members synergise.
    """

    n_perts: int = 150
    n_genes: int = 1000
    n_pairs: int = 150
    interaction_strength: float = 1.0
    frac_buffering: float = 0.3
    frac_synergy: float = 0.3
    coupling: float = 0.15
    cell_line: str = "K562"

    def __post_init__(self) -> None:
        if not (np.isfinite(self.interaction_strength) and self.interaction_strength >= 0):
            raise InputError(
                f"PairConfig: interaction_strength must be a finite number >= 0, got {self.interaction_strength}"
            )
        fracs = (self.frac_buffering, self.frac_synergy)
        if min(fracs) < 0 or sum(fracs) > 1:
            raise InputError(f"PairConfig: frac_buffering and frac_synergy must be >= 0 and sum to <= 1, got {fracs}")
        if not 0 < self.coupling < 1:
            raise InputError(f"PairConfig: coupling must lie in (0, 1), got {self.coupling}")
        if self.n_pairs < 2:
            raise InputError(f"PairConfig: n_pairs must be >= 2, got {self.n_pairs}")


class PairTruth(NamedTuple):
    """The noise-free pairs (M rows, ``screen.pairs`` order) and the singles' truth.

    additive : (M, G) ctrl + delta_a + delta_b.   interaction : (M, G) Y_true - additive.
    Y_true : (M, G) noise-free pair profiles.  cls : (M,) str, one of :data:`CLASSES`.
    n_floored : entries where the expression floor bit (the only
    non-additivity at s = 0).  singles : the single-gene generator's truth.
    """

    strength: float
    additive: np.ndarray
    interaction: np.ndarray
    Y_true: np.ndarray
    cls: np.ndarray
    n_floored: int
    singles: SyntheticTruth


class SyntheticPairs(NamedTuple):
    """``make_pair_screen`` output."""

    screen: PairScreen
    vectors: dict[str, GeneVectors]
    truth: PairTruth


def _single_config(cfg: PairConfig, overrides: dict) -> SyntheticConfig:
    """The single-gene generator's config for one cell line (its first line's amplitudes)."""
    defaults = SyntheticConfig()
    base = {
        "n_perts": cfg.n_perts,
        "n_genes": cfg.n_genes,
        "cell_lines": (cfg.cell_line,),
        "amplitude": defaults.amplitude[:1],
        "common_weight": defaults.common_weight[:1],
    }
    return SyntheticConfig(**{**asdict(defaults), **base, **overrides})


def _relations(module: np.ndarray, coupled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All unordered gene pairs (K, 2) and each one's class index into :data:`CLASSES`."""
    a, b = np.triu_indices(module.shape[0], k=1)
    ma, mb = module[a], module[b]
    cls = np.where(ma == mb, 0, np.where(coupled[ma, mb], 1, 2))
    return np.stack([a, b], axis=1), cls


def _draw_pairs(cfg: PairConfig, module: np.ndarray, rng: np.random.Generator):
    """(M, 2) gene indices and (M,) class of the screened pairs, quotas per class."""
    n_mod = int(module.max()) + 1
    coupled = np.triu(rng.random((n_mod, n_mod)) < cfg.coupling, k=1)
    coupled |= coupled.T
    candidates, cls = _relations(module, coupled)
    quota = [round(cfg.frac_buffering * cfg.n_pairs), round(cfg.frac_synergy * cfg.n_pairs)]
    quota.append(cfg.n_pairs - sum(quota))
    chosen = []
    for c, n in enumerate(quota):
        pool = np.flatnonzero(cls == c)
        if n > pool.size:
            raise InputError(
                f"PairConfig: {n} {CLASSES[c]} pairs asked for, but the latent biology of {cfg.n_perts} genes "
                f"offers {pool.size}: lower n_pairs or frac_{CLASSES[c]}, or raise n_perts"
            )
        chosen.append(rng.choice(pool, size=n, replace=False))
    idx = rng.permutation(np.concatenate(chosen))  # classes mixed, not in blocks
    return candidates[idx], cls[idx]


def _novel(
    u: np.ndarray,
    loadings: np.ndarray,
    pairs: np.ndarray,
    rng: np.random.Generator,
    n_features: int,
    lengthscale: float,
):
    """nu (M, G): ((phi(u_a) * phi(u_b)) H) @ L, symmetric in a and b, unit RMS."""
    phi = _rff(u, n_features, lengthscale, rng)
    H = rng.standard_normal((n_features, loadings.shape[0]))
    nu = ((phi[pairs[:, 0]] * phi[pairs[:, 1]]) @ H) @ loadings
    return nu / (np.sqrt(np.mean(nu**2)) + 1e-300)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def make_pair_screen(seed: int = 0, config: PairConfig | None = None, **overrides) -> SyntheticPairs:
    """Draw singles and pairs with known interactions (see the module docstring).

    ``config`` (or keyword overrides of :class:`PairConfig`, and of
    :class:`SyntheticConfig` for the singles, e.g. ``latent_dim=8``) sets the
    knobs; ``seed`` makes the draw reproducible. Returns the screen (singles
    and pairs sharing ctrl), the raw text / sequence vectors, and the truth.
    """
    pair_keys = {f.name for f in fields(PairConfig)}
    cfg = config if config is not None else PairConfig()
    cfg = PairConfig(**{**asdict(cfg), **{k: v for k, v in overrides.items() if k in pair_keys}})
    single_cfg = _single_config(cfg, {k: v for k, v in overrides.items() if k not in pair_keys})
    draw = make_screens(seed, single_cfg)
    line = cfg.cell_line
    singles, truth = draw.screens[line], draw.truth
    rng = np.random.default_rng([seed, 1])  # its own stream: the singles stay the single-gene draw
    pairs, cls = _draw_pairs(cfg, truth.module, rng)
    ctrl_true = truth.baseline[line]
    delta = truth.Y_true[line] - ctrl_true
    d_a, d_b = delta[pairs[:, 0]], delta[pairs[:, 1]]
    half_sum = 0.5 * (d_a + d_b)
    loadings = truth.loadings / np.sqrt((truth.loadings**2).sum(axis=0).mean())
    nu = _novel(truth.u, loadings, pairs, rng, single_cfg.n_features, single_cfg.lengthscale)
    nu *= _rms(half_sum[cls == 1])
    interaction = np.where((cls == 0)[:, None], -half_sum, np.where((cls == 1)[:, None], half_sum + nu, 0.0))
    additive = ctrl_true + d_a + d_b
    unfloored = additive + cfg.interaction_strength * interaction
    floor = np.log1p(FLOOR * np.expm1(ctrl_true))
    Y_true = np.maximum(unfloored, floor)
    n_cells = (40 + rng.gamma(4.0, 20.0, size=len(pairs))).astype(np.int64)
    Y = np.log1p(counting_noise(np.expm1(Y_true), n_cells[:, None], single_cfg, rng))
    names = tuple(f"{truth.perts[a]}{SEP}{truth.perts[b]}" for a, b in pairs)  # perts are sorted: canonical
    combos = PerturbationData(
        Y=Y,
        ctrl=singles.ctrl,
        de=top_k_abs(Y - singles.ctrl, single_cfg.n_de),
        perts=names,
        genes=singles.genes,
        provenance={
            **dict(singles.provenance),
            "source": f"synthetic pairs(seed={seed}, line={line})",
            "interaction_strength": cfg.interaction_strength,
            "steps": ["gpllm.data.synthetic.pairs.make_pair_screen"],
        },
    )
    screen = pair_screen(singles, combos, where=f"synthetic pairs (seed {seed})")
    pair_truth = PairTruth(
        strength=float(cfg.interaction_strength),
        additive=additive,
        interaction=Y_true - additive,
        Y_true=Y_true,
        cls=np.array([CLASSES[c] for c in cls]),
        n_floored=int((unfloored < floor).sum()),
        singles=truth,
    )
    return SyntheticPairs(screen, dict(draw.vectors), pair_truth)


__all__ = ["CLASSES", "PairConfig", "PairTruth", "SyntheticPairs", "make_pair_screen"]

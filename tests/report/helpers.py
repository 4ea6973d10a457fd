"""Synthetic results frames shaped like the sweep's output, and a numpy reference for the summary."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

#: (model, embedding, quality): quality sets the mean Pearson; higher is better.
DEFAULT_CONFIGS: tuple[tuple[str, str, float], ...] = (
    ("random_perturbation", "none", 0.10),
    ("nonctrl_mean", "none", 0.30),
    ("control", "none", 0.0),
    ("knn_k1", "text", 0.20),
    ("knn_k1", "sequence", 0.19),
    ("knn_k1", "text+sequence", 0.22),
    ("linear", "text", 0.25),
    ("ridge", "text", 0.32),
    ("ridge", "text+sequence", 0.34),
    ("gp", "text", 0.36),
    ("gp", "sequence", 0.35),
    ("gp", "text+sequence", 0.40),
)


def make_example_results(
    *,
    screens: Sequence[str] = ("K562", "RPE1"),
    sizes: Sequence[int] = (100, 200, 400),
    n_folds: int = 3,
    perts_per_fold: int = 8,
    configs: Sequence[tuple[str, str, float]] = DEFAULT_CONFIGS,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per (screen, model, embedding, size, fold, pert), as the sweep writes.

    Pearson ~ quality + 0.05 log(size/100) + noise, MAE ~ 0.3 - quality / 4 +
    noise; the control baseline has undefined (0) correlations; every 7th
    random-perturbation row has an undefined top-20 correlation; models other
    than the GP have NaN NLL / coverage (the sweep's convention); effect_size
    is a property of (screen, pert), shared by every model.
    """
    rng = np.random.default_rng(seed)
    n = n_folds * perts_per_fold
    rows: list[dict] = []
    for screen in screens:
        perts = [f"{screen}_g{i:03d}" for i in range(n)]
        effect = rng.gamma(2.0, 1.0, size=n)
        for model, embedding, quality in configs:
            for size in sizes:
                boost = 0.05 * np.log(size / 100)
                for i, pert in enumerate(perts):
                    undefined_de = model == "control" or (model == "random_perturbation" and i % 7 == 0)
                    undefined_all = model == "control"
                    r_de = 0.0 if undefined_de else quality + boost + 0.1 * rng.normal()
                    r_all = 0.0 if undefined_all else 0.8 * (quality + boost) + 0.05 * rng.normal()
                    has_var = model == "gp"
                    rows.append(
                        {
                            "screen": screen,
                            "model": model,
                            "embedding": embedding,
                            "size": size,
                            "fold": i // perts_per_fold,
                            "pert": pert,
                            "pearson_de": r_de,
                            "pearson_all": r_all,
                            "mae_de": 0.3 - quality / 4 + 0.02 * rng.random(),
                            "mae_all": 0.1 - quality / 10 + 0.01 * rng.random(),
                            "pearson_de_meanref": r_de - 0.1,
                            "nll": float(1.0 + rng.random()) if has_var else float("nan"),
                            "coverage90": float(rng.uniform(0.8, 1.0)) if has_var else float("nan"),
                            "undefined_de": undefined_de,
                            "undefined_all": undefined_all,
                            "effect_size": float(effect[i]),
                        }
                    )
    return pl.DataFrame(rows).with_columns(pl.col("size", "fold").cast(pl.Int64))


#: Models the calibration helper gives a predictive variance but no recalibration.
NOT_RECALIBRATED = ("knn_k1",)


def with_calibration(results: pl.DataFrame, *, seed: int = 1) -> pl.DataFrame:
    """``results`` with the sweep's calibration columns: random values for every model
    but the control baseline (NaN: no variance); NaN recalibrated columns and scale for
    :data:`NOT_RECALIBRATED` (no held-out predictions), as the sweep writes them."""
    from gpllm.evaluate.rows import CALIBRATION_COLUMNS, RECAL, VAR_SCALE

    rng = np.random.default_rng(seed)
    n = results.height
    has_var = (results["model"] != "control").to_numpy()
    recal = has_var & ~results["model"].is_in(list(NOT_RECALIBRATED)).to_numpy()
    columns = {}
    for suffix, keep in (("", has_var), (RECAL, recal)):
        for name in CALIBRATION_COLUMNS:
            values = rng.uniform(0.0, 1.0, n) if "coverage" in name else rng.uniform(0.5, 2.0, n)
            columns[name + suffix] = np.where(keep, values, np.nan)
    columns[VAR_SCALE] = np.where(recal, rng.uniform(0.5, 2.0, n), np.nan)
    return results.drop([c for c in columns if c in results.columns]).with_columns(
        **{name: pl.Series(values) for name, values in columns.items()}
    )


def frame_from_folds(
    folds_by_config: dict[tuple[str, str, int], Sequence[Sequence[float]]],
    *,
    screen: str = "K562",
) -> pl.DataFrame:
    """A results frame with hand-chosen Pearson top-20 values.

    folds_by_config: (model, embedding, size) -> one list of per-perturbation
    values per fold. The other metrics follow from v: pearson_all = v / 2,
    mae_de = 1 - v, mae_all = (1 - v) / 10, so every metric's expected
    summary is known too. Perturbation i of fold f is ``p{f}_{i}`` with effect
    size 10 f + i (the same for every model); no NLL, nothing undefined.
    """
    rows = []
    for (model, embedding, size), folds in folds_by_config.items():
        for f, values in enumerate(folds):
            for i, v in enumerate(values):
                rows.append(
                    {
                        "screen": screen,
                        "model": model,
                        "embedding": embedding,
                        "size": size,
                        "fold": f,
                        "pert": f"p{f}_{i}",
                        "pearson_de": v,
                        "pearson_all": v / 2,
                        "mae_de": 1 - v,
                        "mae_all": (1 - v) / 10,
                        "undefined_de": False,
                        "undefined_all": False,
                        "effect_size": float(10 * f + i),
                    }
                )
    return pl.DataFrame(rows).with_columns(pl.col("size", "fold").cast(pl.Int64))


def reference_summary(values: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """(mean of fold means, 1.96 SE of the fold means) in plain numpy: the paper's estimator."""
    means = np.array([values[folds == f].mean() for f in np.unique(folds)])
    if means.size == 1:
        return float(means[0]), float("nan")
    return float(means.mean()), float(1.96 * means.std(ddof=1) / np.sqrt(means.size))

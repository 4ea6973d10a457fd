# %% [markdown]
# # Scoring another tool's predictions
#
# `gpllm evaluate` scores any tool's predicted profiles with the sweep's metrics (GEARS'
# definitions), so that a GEARS run, a foundation model or a spreadsheet can be set beside
# gpllm's own table. This tutorial makes a small screen, lets two stand-in "tools" predict
# its held-out knockouts, and scores both from the command line.
#
# `GPLLM_TUTORIAL_SMALL=1` (as the test suite sets it) shrinks the screen.

# %%
import os
import pickle
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl

SMALL = os.environ.get("GPLLM_TUTORIAL_SMALL") == "1"
N_PERTS, N_GENES = (120, 200) if SMALL else (600, 2000)


def gpllm(*args: str) -> None:
    """Run the `gpllm` command (as `python -m gpllm.cli`, the same program)."""
    print("$ gpllm", " ".join(args))
    subprocess.run([sys.executable, "-m", "gpllm.cli", *args], check=True)


# %% [markdown]
# ## A screen and its embeddings
#
# `gpllm data synth` writes a synthetic screen in the real files' formats (a Replogle
# pseudobulk h5ad, a GenePT pickle); `gpllm data process` turns the raw screen into the
# processed one that `gpllm evaluate --truth` reads: the mean log-normalised profile per
# perturbation over the highly variable genes, the control mean and each perturbation's
# top-20 DE genes.

# %%
gpllm("data", "synth", "raw", "--n-perts", str(N_PERTS), "--n-genes", str(N_GENES))
gpllm("data", "process", "raw/K562_essential_raw_bulk_01.h5ad", "--preset", "replogle_bulk", "--out", "screen.h5ad")

screen = ad.read_h5ad("screen.h5ad")
text = pickle.load(open("raw/GenePT_gene_embedding_ada_text.pickle", "rb"))  # symbol -> (1536,) vector
print(screen.shape, "perturbations x genes")

# %% [markdown]
# ## Two tools' predictions
#
# The last quarter of the perturbations is held out. Tool A predicts the mean training
# profile for every held-out knockout (the paper's "non-control mean" baseline); tool B
# predicts the profile of the training knockout whose text embedding is nearest, with the
# spread of the training profiles as its predictive variance.
#
# A prediction file is an h5ad whose obs names the perturbations and var the genes, with
# predicted *mean expression* in X (not deltas) and, optionally, predictive variances in
# `layers['variance']` (which adds NLL and coverage to the scores).

# %%
perts = list(screen.obs_names)
n_test = len(perts) // 4
train, test = perts[:-n_test], perts[-n_test:]
Y_train = screen[train].X

Z_train = np.stack([text[p] for p in train])
Z_test = np.stack([text[p] for p in test])
nearest = np.argmin(((Z_test[:, None, :] - Z_train[None, :, :]) ** 2).sum(-1), axis=1)


def write_prediction(path: str, mean: np.ndarray, variance: np.ndarray | None = None) -> None:
    prediction = ad.AnnData(X=mean, obs=pd.DataFrame(index=test), var=pd.DataFrame(index=screen.var_names))
    if variance is not None:
        prediction.layers["variance"] = variance
    prediction.write_h5ad(path)


write_prediction("tool_a.h5ad", np.tile(Y_train.mean(0), (n_test, 1)))
write_prediction("tool_b.h5ad", Y_train[nearest], np.tile(Y_train.var(0), (n_test, 1)))

# %% [markdown]
# ## Scoring them
#
# `gpllm evaluate` prints each metric's mean ± 1.96 SE across the scored perturbations and
# writes one row per perturbation with `--out`. `--train` names the training
# perturbations (a file, one per line), the reference of the Systema variant of the
# metrics. The DE metrics use the truth's own top-20 DE genes; with GEARS' processed file
# as the truth, `--preset gears --de-key rank_genes_groups_cov_all` uses GEARS' lists
# instead ([the guide](../guides/scoring.md)).

# %%
with open("train.txt", "w") as names:
    names.write("\n".join(train))
for tool in ("tool_a", "tool_b"):
    gpllm("evaluate", f"{tool}.h5ad", "--truth", "screen.h5ad", "--train", "train.txt", "--out", f"{tool}.csv")

# %% [markdown]
# The rows are plain tables: set the tools side by side, perturbation by perturbation.

# %%
rows = pl.concat([pl.read_csv(f"{tool}.csv").with_columns(tool=pl.lit(tool)) for tool in ("tool_a", "tool_b")])
summary = rows.group_by("tool").agg(pl.col("pearson_de").mean(), pl.col("mae_de").mean(), pl.len()).sort("tool")
print(summary)
assert summary["len"].to_list() == [n_test, n_test]

# %% [markdown]
# On this screen the mean training profile scores a higher `pearson_de` than the nearest
# neighbour in text-embedding space: the paper's point that the simple baselines are hard
# to beat, and why every table sets a model beside them. Its `pearson_de_meanref` (the
# Systema variant, Δ measured from the training perturbations' mean instead of the
# control) is 0 by construction. Tool B's variance layer adds `nll` and `coverage90`:
# a calibrated 90% interval would hold 0.90 of the measured values.

# %% [markdown]
# # Which knockouts to measure next: a design simulation
#
# A GP gives every unmeasured knockout a predictive variance, which a screen could use to
# choose what to measure next. `gpllm active` simulates that on a screen whose responses
# are all known: it holds out a test set, measures a random seed set of the rest, then in
# rounds lets each acquisition pick a batch, refits the GP and scores it on the test set.
# This tutorial runs it on a small synthetic screen with two built-in acquisitions and one
# of our own. [The guide](../guides/active.md) reads the default run's results.
#
# `GPLLM_TUTORIAL_SMALL=1` (as the test suite sets it) shrinks the screen and the budget.

# %%
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

SMALL = os.environ.get("GPLLM_TUTORIAL_SMALL") == "1"
N_PERTS, N_GENES, BUDGET, BATCH, REPEATS = (100, 100, 40, 20, 1) if SMALL else (600, 500, 300, 50, 3)

# %% [markdown]
# ## An acquisition of our own
#
# An acquisition is any function `acquire(design, batch_size, key)` that returns
# `batch_size` indices into the pool ([Acquisitions](../extending/acquisitions.md)). This
# one measures the knockouts farthest from the pool's centre in embedding space, which the
# GP does not know about.

# %%
Path("far_from_centre.py").write_text("""
import numpy as np


def acquire(design, batch_size, key):
    distance = np.linalg.norm(design.Z_pool - design.Z_pool.mean(0), axis=1)
    distance[~design.available] = -np.inf
    return np.argsort(-distance)[:batch_size]
""")

# %% [markdown]
# ## The config
#
# Synthetic screens drawn in-process (`N_PERTS` knockouts; the first, K562, is used), the text
# embedding reduced to 20 principal components, and an `[active]` section. Every key is in
# the [config reference](../config.md).

# %%
Path("small_screen.toml").write_text(f"""
name = "small_screen"
embeddings = ["text"]
pca_k = 20

[data]
kind = "synthetic"
seed = 0

[data.overrides]
n_perts = {N_PERTS}
n_genes = {N_GENES}

[active]
acquisitions = ["random", "variance_reduction", "far_from_centre.py:acquire"]
seed_size = {BATCH}
batch_size = {BATCH}
budget = {BUDGET}
repeats = {REPEATS}
""")

# %% [markdown]
# ## The run
#
# Each (acquisition, repeat, round) is written to the run folder as it finishes, so a
# killed run resumes where it stopped. The command prints the measurements each
# acquisition needs to reach 90% and 95% of what random reaches at the full budget.

# %%
command = ["gpllm", "active", "--config", "small_screen.toml", "--out", "active_run", "--no-progress"]
subprocess.run([sys.executable, "-m", "gpllm.cli", *command[1:]], check=True)  # the gpllm command, in this Python

# %% [markdown]
# ## The results
#
# `results.parquet` holds one row per acquisition, repeat and round; `learning_curves.png`
# draws them, and `measurements_to_reach.csv` is the table printed above.

# %%
rows = pl.read_parquet("active_run/results.parquet")
final = rows.filter(pl.col("n_measured") == pl.col("n_measured").max())
print(final.group_by("acquisition").agg(pl.col("pearson_de").mean()).sort("pearson_de", descending=True))
assert final["acquisition"].n_unique() == 3
assert Path("active_run/learning_curves.png").exists()

# %% [markdown]
# At this size the curves are noisy: run more repeats (`--repeats`) before reading a
# difference between acquisitions, and on a real screen run it before trusting any of
# them.

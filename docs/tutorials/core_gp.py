# %% [markdown]
# # The core GP in 20 lines
#
# One GP from gene embeddings Z (N, Q) to expression profiles Y (N, D): one kernel shared
# by all D genes, fitted by maximising Eq. 1 ([the maths](../maths.md)), then conditioned
# once and used to predict, and to draw samples, at new embeddings. The data here are
# made up: a smooth function of a 1-d input plus noise, so that the fit can be seen.
#
# `GPLLM_TUTORIAL_SMALL=1` (as the test suite sets it) shrinks the problem.

# %%
import os

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import gpllm
from gpllm import gp

gpllm.use_float64()  # the one global switch; importing gpllm changes nothing
SMALL = os.environ.get("GPLLM_TUTORIAL_SMALL") == "1"
N, D = (40, 8) if SMALL else (200, 50)

# %% [markdown]
# ## Data
#
# N training inputs on a line and D outputs, each a different smooth curve of the same
# input plus noise of standard deviation 0.1. The outputs share one kernel, so what the fit
# learns from all of them (the lengthscale, the noise) serves each.

# %%
rng = np.random.default_rng(0)
Z = np.sort(rng.uniform(-3, 3, size=(N, 1)), axis=0)
phase = rng.uniform(0, 2 * np.pi, size=D)
Y = np.sin(1.5 * Z + phase) + 0.1 * rng.normal(size=(N, D))
Z_new = np.linspace(-4, 4, 200)[:, None]

# %% [markdown]
# ## Fit, condition, predict, sample
#
# `gp.fit` maximises Eq. 1 by L-BFGS (any optax optimiser via `gp.FitOptions`) in one
# compiled loop and returns the hyperparameters in `result.params` (unconstrained, as the
# optimiser holds them) and `result.values` (constrained, to read). `gp.condition` factors
# A = K + s² I once; `gp.predict` and `gp.sample` reuse that factor.

# %%
kernel = gp.RBF()
result = gp.fit(kernel, Z, Y)
print(result)

post = gp.condition(kernel, result.params, Z, Y)
mean, var = gp.predict(kernel, post, Z_new)  # (200, D) and (200,): one variance for all outputs, noise included
draws = gp.sample(kernel, post, Z_new, jax.random.key(1), n_samples=3, include_noise=False)  # (3, 200, D)
print(mean.shape, var.shape, draws.shape)

# %% [markdown]
# The noise variance should come out near 0.1² = 0.01, and the variance of the prediction
# should grow outside the training inputs' range [-3, 3].

# %%
noise = float(result.values.noise)
print(f"noise variance {noise:.4f}")
assert 0.003 < noise < 0.03
assert var[0] > var[100] and var[-1] > var[100]

# %% [markdown]
# ## A figure
#
# The first output: training points, posterior mean with a 95% band for a new measurement,
# and three samples of the latent function.

# %%
sd = np.sqrt(np.asarray(var))
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(Z[:, 0], Y[:, 0], "k.", label="training points")
ax.plot(Z_new[:, 0], mean[:, 0], "C0", label="posterior mean")
ax.fill_between(Z_new[:, 0], mean[:, 0] - 1.96 * sd, mean[:, 0] + 1.96 * sd, color="C0", alpha=0.2, label="95%")
ax.plot(Z_new[:, 0], draws[:, :, 0].T, "C1", lw=0.8, alpha=0.7)
ax.set_xlabel("embedding (1-d)")
ax.set_ylabel("output 0")
ax.set_ylim(-2, 2.4)
ax.legend(loc="upper center", ncol=3, fontsize="small", frameon=False)
fig.tight_layout()
fig.savefig("core_gp.png", dpi=120)

# %% [markdown]
# ![The first output's fit](core_gp.png)
#
# `gp.predict` and `gp.sample` include the noise s² by default: the variance of a new
# *measurement*, which is what a held-out profile is scored against. `include_noise=False`
# gives the latent function's, as the samples above.

"""Peak memory of the sweep's GP on its folds, against the estimate the memory plan uses.

    python -m benchmarks.gp_memory                         # GWPS's largest: N = 7,816, G = 8,000, Q = 50, 5 folds
    python -m benchmarks.gp_memory --n 1400 --genes 2000   # the default grid's largest

Runs :meth:`gpllm.models.gp.GPModel.fit_predict_folds` (float32 by default, as the sweep
does) on random folds of the asked size in this process, with L-BFGS capped at
``--steps``: the peak of one value + gradient does not depend on how many steps run,
so the cap keeps the run to minutes. Prints the process's peak resident memory
(VmHWM) above what it held just before the fit (the folds' arrays, JAX, the
interpreter) against :meth:`GPModel.peak_bytes`, which
:mod:`gpllm.evaluate.runner.memory_plan` schedules chunks by. Compilation's own memory
is inside the measured figure and outside the estimate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

GIB = 1024**3


def _status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def random_folds(n_train: int, n_test: int, genes: int, width: int, n_folds: int, dtype: str, seed: int = 0):
    """``n_folds`` folds of smooth random data: Y = f(Z) + noise with f a random feature map,
    so that the fit's hyperparameters stay in a realistic range."""
    from gpllm.models.base import Fold

    rng = np.random.default_rng(seed)
    folds = []
    for _ in range(n_folds):
        Z = rng.standard_normal((n_train + n_test, width)).astype(dtype)
        W = rng.standard_normal((width, 64)).astype(dtype) / np.sqrt(width)
        features = np.tanh(Z @ W)
        Y = features @ rng.standard_normal((64, genes)).astype(dtype) * 0.1
        Y += 0.1 * rng.standard_normal(Y.shape).astype(dtype)
        folds.append(Fold(Z[:n_train], Y[:n_train], Z[n_train:]))
    return folds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=7816, help="training perturbations per fold")
    parser.add_argument("--test", type=int, default=1955, help="test perturbations per fold")
    parser.add_argument("--genes", type=int, default=8000)
    parser.add_argument("--width", type=int, default=50, help="embedding width Q")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--steps", type=int, default=2, help="L-BFGS steps per fit (the peak does not depend on it)")
    args = parser.parse_args(argv)

    from gpllm.blas import limit_openblas_spin

    limit_openblas_spin()  # as the CLI does, before NumPy's OpenBLAS starts
    import jax

    from gpllm.gp.fit import FitOptions
    from gpllm.models.gp import GPModel
    from gpllm.precision import use_float64

    if args.dtype == "float64":
        use_float64()
    model = GPModel(dtype=args.dtype, options=FitOptions(max_steps=args.steps))
    estimate = model.peak_bytes(args.n, args.genes, args.width, args.folds)
    folds = random_folds(args.n, args.test, args.genes, args.width, args.folds, args.dtype)
    before = _status_bytes("VmRSS")
    started = time.perf_counter()
    fits = model.fit_predict_folds(folds)
    seconds = time.perf_counter() - started
    added = _status_bytes("VmHWM") - before
    assert len(fits) == args.folds
    verdict = "within" if added <= estimate else "ABOVE"
    print(
        f"GP fit_predict_folds, {args.folds} folds of N = {args.n:,} x G = {args.genes:,} (Q = {args.width}), "
        f"{args.dtype}, {args.steps} L-BFGS step(s), {jax.default_backend()}: {seconds:.0f} s"
    )
    print(
        f"  peak above the inputs {added / GIB:.2f} GiB; estimate (GPModel.peak_bytes) {estimate / GIB:.2f} GiB: "
        f"{verdict} the estimate ({added / estimate:.0%} of it)"
    )
    print(f"  held before the fit (inputs, JAX, the interpreter): {before / GIB:.2f} GiB")


if __name__ == "__main__":
    main()

"""Chunked pseudobulk benchmark: a 500,000-cell x 8,000-gene screen from disk in bounded memory.

    python -m benchmarks.pseudobulk                  # 500,000 x 8,000 CSR h5ad, ~2,000 perturbations
    python -m benchmarks.pseudobulk --quick          # 20,000 x 2,000: seconds
    gpllm bench pseudobulk [--quick]                 # the same, from a source checkout

1. Writes a sparse CSR h5ad of raw counts (float32) to ``--workdir`` (default: a
   temporary folder, deleted afterwards) chunk by chunk through anndata's
   ``write_elem``/``sparse_dataset(...).append``, so the matrix never exists in memory.
   Each cell's genes are detected with gene-specific probabilities (mean ``--density``)
   and carry geometric counts; obs['gene'] names one of ``--perts`` targets or
   'non-targeting' (5% of cells).
2. Processes it with ``gpllm.data.screens.perturbseq.read_screen(path, chunked=True)`` (backed
   AnnData, ``--chunk-size`` rows at a time: normalise, log1p, group moments, 2,000 HVGs,
   Welch t top-20 DE) in a fresh child process.
3. Prints the wall time and the child's peak resident memory (``getrusage(RUSAGE_CHILDREN)``
   in the parent, and the child's own VmHWM after imports, i.e. the libraries' share),
   against the 4 GiB target. Results also go to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.peers import REPO_ROOT

GIB = 1024**3
MIB = 1024**2
CONTROL_FRACTION = 0.05


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _csr_chunk(rng, n_rows: int, gene_p: np.ndarray):
    """(n_rows, G) CSR float32 counts: gene j detected with probability gene_p[j], count >= 1."""
    import scipy.sparse as sp

    mask = rng.random((n_rows, gene_p.size), dtype=np.float32) < gene_p
    rows, cols = np.nonzero(mask)  # row-major: indices come out sorted per row
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    data = rng.geometric(0.4, size=cols.size).astype(np.float32)
    return sp.csr_matrix((data, cols.astype(np.int32), indptr), shape=mask.shape)


def write_screen(
    path: Path, n_cells: int, n_genes: int, n_perts: int, density: float, seed: int = 0, chunk: int = 5000
) -> dict:
    """Write the synthetic screen to ``path`` in chunks; returns its size facts."""
    import anndata as ad
    import h5py
    import pandas as pd

    rng = np.random.default_rng(seed)
    gene_p = rng.gamma(1.0, density, n_genes).clip(1e-4, 0.95).astype(np.float32)
    targets = np.array([f"PERT{i:04d}" for i in range(n_perts)], dtype=object)
    labels = targets[rng.integers(0, n_perts, n_cells)]
    labels[rng.random(n_cells) < CONTROL_FRACTION] = "non-targeting"
    obs = pd.DataFrame({"gene": pd.Categorical(labels)}, index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"GENE{j:05d}" for j in range(n_genes)])
    nnz = 0
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"
        ad.io.write_elem(f, "obs", obs)
        ad.io.write_elem(f, "var", var)
        for key in ("uns", "obsm", "varm", "obsp", "varp", "layers"):
            ad.io.write_elem(f, key, {})
        for a in range(0, n_cells, chunk):
            block = _csr_chunk(rng, min(chunk, n_cells - a), gene_p)
            nnz += block.nnz
            if a == 0:
                ad.io.write_elem(f, "X", block, dataset_kwargs={"chunks": (1 << 18,)})
                X = ad.io.sparse_dataset(f["X"])
            else:
                X.append(block)
            if (a // chunk) % 20 == 0:
                _progress(f"wrote {a + block.shape[0]:,} / {n_cells:,} cells")
    return {
        "cells": n_cells,
        "genes": n_genes,
        "perturbations": n_perts,
        "nnz": nnz,
        "density": nnz / (n_cells * n_genes),
        "file_bytes": path.stat().st_size,
    }


def _vm_hwm_bytes() -> int:
    """This process's peak resident set so far (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child(path: Path, chunk_size: int) -> None:
    """Run in a fresh process: pseudobulk ``path`` and print one JSON line."""
    from gpllm.data.screens.perturbseq import read_screen

    after_import = _vm_hwm_bytes()
    t0 = time.perf_counter()
    screen = read_screen(path, chunked=True, chunk_size=chunk_size, n_hvg=2000)
    wall = time.perf_counter() - t0
    s = screen.singles
    print(
        json.dumps(
            {
                "wall_s": wall,
                "peak_after_import_bytes": after_import,
                "peak_self_bytes": _vm_hwm_bytes(),
                "P": s.n_perts,
                "G": s.n_genes,
                "de_method": s.provenance["de_method"],
                "n_control_rows": s.provenance["n_control_rows"],
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pseudobulk", description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=500_000)
    parser.add_argument("--genes", type=int, default=8_000)
    parser.add_argument("--perts", type=int, default=2_000)
    parser.add_argument("--density", type=float, default=0.05, help="mean fraction of genes detected per cell")
    parser.add_argument("--chunk-size", type=int, default=4096, help="rows per streamed chunk")
    parser.add_argument("--workdir", type=Path, default=None, help="where the h5ad goes (default: temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    parser.add_argument("--budget-gib", type=float, default=4.0, help="peak memory target")
    parser.add_argument("--quick", action="store_true", help="20,000 cells x 2,000 genes, 200 perturbations")
    parser.add_argument("--json", type=Path, default=Path("results/bench_pseudobulk.json"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.chunk_size)
        return 0
    if args.quick:
        args.cells, args.genes, args.perts = 20_000, 2_000, 200

    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="gpllm-bench-pseudobulk-")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"screen_{args.cells}x{args.genes}.h5ad"
    try:
        _progress(f"writing {path}")
        t0 = time.perf_counter()
        facts = write_screen(path, args.cells, args.genes, args.perts, args.density)
        facts["write_s"] = time.perf_counter() - t0
        print(
            f"screen: {facts['cells']:,} cells x {facts['genes']:,} genes, {facts['perturbations']:,} "
            f"perturbations, {facts['nnz']:,} stored values (density {facts['density']:.3f}), "
            f"{facts['file_bytes'] / GIB:.2f} GiB on disk, written in {facts['write_s']:.0f} s"
        )

        _progress("pseudobulk in a child process")
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.pseudobulk",
            "--child",
            str(path),
            "--chunk-size",
            str(args.chunk_size),
        ]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
        outer = time.perf_counter() - t0
        if done.returncode != 0:
            print(done.stderr[-4000:], file=sys.stderr)
            return done.returncode
        run = json.loads(done.stdout.strip().splitlines()[-1])
        # ru_maxrss is KiB on Linux: the largest resident set of any child waited for (only this one)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    finally:
        if tmp is not None and not args.keep:
            tmp.cleanup()

    ok = peak < args.budget_gib * GIB
    print(
        f"read_screen(chunked=True, chunk_size={args.chunk_size}): {run['wall_s']:.1f} s "
        f"({facts['cells'] / run['wall_s']:,.0f} cells/s; {outer:.1f} s with interpreter start and imports)"
    )
    print(
        f"result: P={run['P']} perturbations x G={run['G']} HVGs, DE by {run['de_method']}, "
        f"{run['n_control_rows']:,} control cells"
    )
    print(
        f"peak RSS of the child: {peak / MIB:,.0f} MiB (of which {run['peak_after_import_bytes'] / MIB:,.0f} MiB "
        f"after imports); target < {args.budget_gib:g} GiB: {'met' if ok else 'MISSED'}"
    )

    report = {
        "machine": platform.platform(),
        "screen": facts,
        "chunk_size": args.chunk_size,
        "run": run,
        "outer_s": outer,
        "peak_rss_bytes": peak,
        "budget_met": ok,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

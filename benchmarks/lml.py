"""LML value+gradient benchmark: gpllm against its peers, at the paper's size, in ONE run.

    python -m benchmarks.lml                     # N=1400, Q=100, D=2000, sweep, L-BFGS fit
    python -m benchmarks.lml --quick             # small sizes, a minute (the README demo)
    gpllm bench lml [--quick]                    # the same, from a source checkout

Every case runs alone in a fresh process (``benchmarks.peers.run_isolated``) so that
its peak memory is its own, and all of them (peers too) in the same environment, with
gpllm's OpenBLAS spin limit (gpllm/blas.py); times are medians of repeats after
compilation. Printed:

1. the machine's GEMM rate (jitted jnp.matmul, float64 and float32);
2. the main table: each case's median time, peak memory, its ratio to gpllm in the same
   dtype, and its agreement with gpllm's value; below it, the per-output-scale value+gradient
   (``gpllm-per-output``, the profile likelihood) against the shared-scale paths;
3. gpllm's FLOP count per path, the FLOP-bound time (FLOPs / GEMM rate) and the
   fraction of it reached. The FLOPs are those of the compiled program (XLA's cost
   analysis, plus potrf and the diagonal blocks' solves, which run in LAPACK); the
   dense algorithm's count (what a program skipping no zeros would do) is printed
   next to it. The GEMM rate here is timed in the case's own process,
   alternating with the case's runs, and the fraction is the median over those rounds of
   (FLOP-bound time / case time) within the round: on a shared machine the rate drifts by
   +-30% over minutes, and a fraction is only meaningful when both were measured together.
   Next to it, the floor of the algorithm: its potrf timed alone, every other FLOP at
   the GEMM rate;
4. a scaling sweep over N at fixed D (``--sweep``, ``--sweep-d``), both dtypes, on the
   gram path (``--sweep-path``): time, peak memory and the fraction of the GEMM rate, from
   N = 5,600 on against the run's opening GEMM rate (item 1), since the GEMM interleaved
   with a case that large runs 2-3x slower after it; each row names its rate;
5. the wall time of a full L-BFGS fit at the main size, in float64 (this process turns
   JAX's float64 on for it; the line names the dtype).

Every printed figure names its dtype: the table, FLOP and sweep rows in a column, the
GEMM rates and the fit on their line.

Results are also written as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from gpllm.blas import limit_openblas_spin

limit_openblas_spin()  # before anything loads SciPy's LAPACK (gpllm/blas.py)
from benchmarks.peers import (  # noqa: E402  (it imports scipy.linalg: after the call above)
    DEFAULT_MAX_BYTES,
    REPO_ROOT,
    algorithm_floor_s,
    child_environment,
    run_isolated,
)

MIB = 1024**2
GIB = 1024**3
SHARED_SCALE_CASES = ("gpllm-gram", "gpllm-direct")  # Eq. 1, one scale for all outputs
PER_OUTPUT_CASE = "gpllm-per-output"  # the profile likelihood, one scale per output
GEMM_N = 2000  # the GEMM whose rate defines "FLOP-bound": 2000 x 2000 x 2000, jitted jnp.matmul
#: From this N on, a sweep row's fraction is taken against the run's opening GEMM rate: the
#: GEMM interleaved with such a case runs 2-3x slower after it (its working set evicts the
#: caches and the OpenBLAS threads park), which would inflate the fraction by as much.
OPENING_RATE_FROM_N = 5600


def dense_flops(n: int, q: int, d: int, path: str) -> float:
    """FLOPs of one value+gradient by the dense algorithm, skipping no zeros (the
    standard LAPACK/BLAS counts): the kernel's distance GEMM 2N^2Q, potrf N^3/3,
    W = L^{-1}F (N^2 R; R = D direct, min(N, D) gram), W W^T (2N^2 R) and
    L^{-T}(W W^T - D I)L^{-1} as two trsm with N right-hand sides (2N^3)."""
    r = d if path == "direct" else min(n, d)
    return 2 * n * n * q + n**3 / 3 + n * n * r + 2 * n * n * r + 2 * n**3


def _gemm(dtype: str, n: int, repeats: int) -> dict:
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "benchmarks.peers",
        "--gemm",
        "--n",
        str(n),
        "--dtype",
        dtype,
        "--repeats",
        str(repeats),
    ]
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=True, env=child_environment())
    return json.loads(out.stdout.strip().splitlines()[-1])


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def run_cases(n, q, d, repeats, max_bytes, include_peers=True) -> list[dict]:
    """All cases at one size; gpllm first, then the peers as their users write them."""
    cases = [
        ("gpllm-gram", "float64"),
        ("gpllm-direct", "float64"),
        ("gpllm-per-output", "float64"),
        ("gpllm-gram", "float32"),
        ("gpllm-direct", "float32"),
        ("gpllm-per-output", "float32"),
    ]
    if include_peers:
        cases += [
            ("numpy", "float64"),
            ("tinygp", "float64"),
            ("gpjax", "float64"),
            ("sklearn", "float64"),
            ("sklearn-value", "float64"),
            ("numpy", "float32"),
            ("tinygp", "float32"),
            ("gpjax", "float32"),
        ]
    records = []
    for name, dtype in cases:
        _progress(f"{name} {dtype} at N={n}, Q={q}, D={d}")
        reps = 3 if name == "gpjax" else repeats
        # gpllm's runs alternate with the GEMM its FLOP fraction is measured against.
        gemm_n = GEMM_N if name.startswith("gpllm") else None
        records.append(run_isolated(name, n, q, d, dtype, reps, max_bytes=max_bytes, timeout=1800, gemm_n=gemm_n))
    return records


def main_table(records: list[dict]) -> list[dict]:
    """Rows with the ratio of each case's time to the best gpllm path of its dtype (Eq. 1's,
    shared scales), and each value's agreement with gpllm's (not for the per-output profile
    likelihood, a different quantity)."""
    best = {}
    for r in records:
        if r["case"] in SHARED_SCALE_CASES and "error" not in r:
            best[r["dtype"]] = min(best.get(r["dtype"], np.inf), r["median_s"])
    reference = {r["dtype"]: r["value"] for r in records if r["case"] == "gpllm-gram" and "error" not in r}
    rows = []
    for r in records:
        if "error" in r:
            rows.append({"case": r["case"], "dtype": r["dtype"], "error": r["error"]})
            continue
        rows.append(
            {
                "case": r["case"],
                "dtype": r["dtype"],
                "d_used": r.get("d_used"),
                "median_s": r["median_s"],
                "peak_mib": r["peak_rss_bytes"] / MIB,
                "ratio_to_gpllm": r["median_s"] / best[r["dtype"]],
                "rel_diff_value": (
                    None
                    if r["case"] == PER_OUTPUT_CASE
                    else abs(r["value"] - reference[r["dtype"]]) / abs(reference[r["dtype"]])
                ),
                "note": r.get("note", ""),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'case':<17}{'dtype':<9}{'D used':>7}{'median s':>10}{'peak MiB':>10}{'x gpllm':>9}{'|dLML|/LML':>12}")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<17}{r['dtype']:<9}  error: {r['error'][:80]}")
            continue
        agreement = "(profile)" if r["rel_diff_value"] is None else f"{r['rel_diff_value']:.1e}"
        print(
            f"{r['case']:<17}{r['dtype']:<9}{r['d_used'] or '':>7}{r['median_s']:>10.3f}"
            f"{r['peak_mib']:>10.0f}{r['ratio_to_gpllm']:>9.2f}{agreement:>12}"
        )
    print_per_output_cost(rows)
    for r in rows:
        if "error" not in r and r["d_used"] and r["case"].startswith("sklearn") and r["note"]:
            print(f"  note [{r['case']}]: {r['note']}")


def print_per_output_cost(rows: list[dict]) -> None:
    """Per-output scales' value+gradient against the shared-scale one, per dtype: against the
    direct path (the same solves, the scaling of W's columns added) and the best shared path."""
    times = {(r["case"], r["dtype"]): r["median_s"] for r in rows if "error" not in r}
    for dtype in sorted({d for _, d in times}):
        if (PER_OUTPUT_CASE, dtype) not in times:
            continue
        shared = {c: times[(c, dtype)] for c in SHARED_SCALE_CASES if (c, dtype) in times}
        per_output = times[(PER_OUTPUT_CASE, dtype)]
        ratios = ", ".join(f"{per_output / s:.2f}x {c}" for c, s in shared.items())
        print(f"per-output scales, {dtype}: {per_output:.3f} s = {ratios}")


def paired_fraction(record: dict, flops: float) -> float:
    """A gpllm record's fraction of the GEMM rate: the median over the rounds in which
    the case and the GEMM ran back to back, so a noise burst that slows a round slows
    both and cancels in that round's ratio."""
    gflop_gemm = record["gemm_gflop"]  # of one timed GEMM call (several GEMMs)
    case_s, gemm_s = np.asarray(record["all_s"][1:]), np.asarray(record["gemm_all_s"])
    return float(np.median((flops / 1e9) * gemm_s / gflop_gemm / case_s))


def sweep_fraction(record: dict, opening_gflops: float) -> tuple[float, str]:
    """A sweep record's fraction of the GEMM rate and what it was measured against: the
    interleaved GEMM (:func:`paired_fraction`) below ``OPENING_RATE_FROM_N``, from there on
    the GEMM timed at the start of the run (FLOPs / (opening rate x median time))."""
    if record["n"] < OPENING_RATE_FROM_N:
        return paired_fraction(record, record["flops"]), f"interleaved GEMM {record['gemm_gflops']:.0f} GFLOP/s"
    fraction = record["flops"] / (opening_gflops * 1e9 * record["median_s"])
    return fraction, f"the run's opening GEMM {opening_gflops:.0f} GFLOP/s"


def flop_report(records, n, q, d) -> list[dict]:
    """FLOP-bound fraction per gpllm case, against the GEMM timed in the case's own process."""
    out = []
    for r in records:
        if not r["case"].startswith("gpllm") or "error" in r:
            continue
        path = "direct" if r["case"] == PER_OUTPUT_CASE else r["case"].split("-", 1)[1]
        flops, rate = r["flops"], r["gemm_gflops"]
        bound = flops / (rate * 1e9)
        floor = algorithm_floor_s(n, flops, r["potrf_s"], rate)
        out.append(
            {
                "case": r["case"],
                "dtype": r["dtype"],
                "gflop": flops / 1e9,
                "dense_gflop": dense_flops(n, q, d, path) / 1e9,
                "gemm_gflops": rate,
                "flop_bound_s": bound,
                "median_s": r["median_s"],
                "fraction_of_gemm_rate": paired_fraction(r, flops),
                "dense_fraction_of_gemm_rate": paired_fraction(r, dense_flops(n, q, d, path)),
                "potrf_s": r["potrf_s"],
                "floor_s": floor,
                "floor_fraction_of_gemm_rate": bound / floor,
            }
        )
    return out


def print_flops(flops: list[dict]) -> None:
    for f in flops:
        print(
            f"{f['case']:<17}{f['dtype']:<9}{f['gflop']:>7.1f} GFLOP ({f['dense_gflop']:.1f} dense)  "
            f"GEMM {f['gemm_gflops']:6.1f} GFLOP/s  bound {f['flop_bound_s']:.3f} s  measured {f['median_s']:.3f} s"
            f"  -> {100 * f['fraction_of_gemm_rate']:.0f}% of GEMM rate "
            f"({100 * f['dense_fraction_of_gemm_rate']:.0f}% counting dense FLOPs)"
        )
    print("Floor of the algorithm: its potrf timed alone in the same rounds, every other FLOP at the GEMM rate")
    for f in flops:
        print(
            f"{f['case']:<17}{f['dtype']:<9}potrf {1e3 * f['potrf_s']:.0f} ms -> floor {f['floor_s']:.3f} s "
            f"= {100 * f['floor_fraction_of_gemm_rate']:.0f}% of GEMM rate; "
            f"gpllm's time {f['median_s'] / f['floor_s']:.2f}x the floor"
        )


def time_full_fit(n, q, d, seed=0) -> dict:
    """Wall time of gp.fit (L-BFGS) at one size in float64: first call (with compile) and a rerun.

    This process switches JAX's float64 on first: without it JAX truncates the float64
    problem to float32 and the "float64" fit would silently be a float32 one."""
    import jax

    import gpllm
    from benchmarks.peers import make_problem
    from gpllm import gp

    gpllm.use_float64()
    Z, Y = make_problem(n, q, d, seed, np.float64)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        result = jax.block_until_ready(gp.fit(gp.RBF(), Z, Y))
        times.append(time.perf_counter() - t0)
    values = gp.params_to_values(gp.RBF(), result.params)
    dtype = str(np.asarray(result.lml).dtype)
    assert dtype == "float64", f"the fit ran in {dtype}, not float64"
    return {
        "n": n,
        "q": q,
        "d": d,
        "dtype": dtype,
        "first_call_s": times[0],
        "rerun_s": times[1],
        "iterations": int(result.n_steps),
        "converged": bool(result.converged),
        "lml": float(result.lml),
        "fitted": {
            "variance": float(values["kernel"]["variance"]),
            "lengthscale": float(values["kernel"]["lengthscale"]),
            "noise": float(values["noise"]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lml", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1400)
    parser.add_argument("--q", type=int, default=100)
    parser.add_argument("--d", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep", default="200,700,1400,2800,5600", help="N values ('' for none)")
    parser.add_argument("--sweep-d", type=int, default=None, help="D of the sweep (default --d)")
    parser.add_argument("--sweep-dtypes", default="float64,float32")
    parser.add_argument(
        "--sweep-path",
        choices=("gram", "direct"),
        default="gram",
        help="gram: Y enters through its QR factor, prepared once (not timed)",
    )
    parser.add_argument("--sweep-repeats", type=int, default=3)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="sklearn gradient budget")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-fit", action="store_true")
    parser.add_argument("--quick", action="store_true", help="N=300, D=400, sweep 100,300: a fast demo")
    parser.add_argument("--json", type=Path, default=Path("results/bench_lml.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.d, args.q, args.repeats, args.sweep, args.sweep_repeats = 300, 400, 50, 3, "100,300", 3

    report = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "size": {"n": args.n, "q": args.q, "d": args.d},
    }
    env = child_environment()
    report["environment"] = {name: env[name] for name in ("OPENBLAS_THREAD_TIMEOUT",)}
    print(
        f"every case in its own process, OPENBLAS_THREAD_TIMEOUT={env['OPENBLAS_THREAD_TIMEOUT']} "
        "(gpllm's default, gpllm/blas.py; peers get the same)"
    )
    _progress("GEMM rate")
    gemm = {dt: _gemm(dt, GEMM_N, 5) for dt in ("float64", "float32")}
    report["gemm"] = gemm
    print(
        f"GEMM 2000^3 (jitted jnp.matmul): float64 {gemm['float64']['jax_gflops']:.1f} GFLOP/s, "
        f"float32 {gemm['float32']['jax_gflops']:.1f} GFLOP/s "
        f"(np.dot: {gemm['float64']['numpy_gflops']:.1f} / {gemm['float32']['numpy_gflops']:.1f})"
    )

    records = run_cases(args.n, args.q, args.d, args.repeats, args.max_bytes, not args.no_peers)
    rows = main_table(records)
    report["cases"], report["table"] = records, rows
    print(f"\nLML value+gradient, N={args.n}, Q={args.q}, D={args.d} (median of {args.repeats} after compile)")
    print_table(rows)

    flops = flop_report(records, args.n, args.q, args.d)
    report["flops"] = flops
    print(
        "\nFLOP-bound check (FLOPs / GEMM rate vs measured; the GEMM timed alternately with the case,"
        " fraction = median over those rounds)"
    )
    print_flops(flops)

    sweep = []
    sweep_d = args.sweep_d or args.d
    print(
        f"\nScaling sweep, gpllm {args.sweep_path} path, D={sweep_d}, "
        f"median of {args.sweep_repeats} after compile, each size in its own process; the fraction of the GEMM "
        f"rate against the GEMM interleaved with the case, from N={OPENING_RATE_FROM_N} on against the run's "
        "opening GEMM rate (the interleaved one slows 2-3x after a large case)"
    )
    for n in (int(x) for x in args.sweep.split(",") if x):
        for dtype in args.sweep_dtypes.split(","):
            _progress(f"sweep N={n} {dtype}")
            r = run_isolated(
                f"gpllm-{args.sweep_path}", n, args.q, sweep_d, dtype, args.sweep_repeats, timeout=3600, gemm_n=GEMM_N
            )
            if "error" in r:
                print(f"N={n:>6} {dtype:<8} error: {r['error'][:200]}")
                continue
            r["fraction_of_gemm_rate"], r["fraction_basis"] = sweep_fraction(r, gemm[dtype]["jax_gflops"])
            sweep.append(r)
            print(
                f"N={n:>6} {dtype:<8} median {r['median_s']:8.3f} s  peak {r['peak_rss_bytes'] / GIB:5.2f} GiB "
                f"(process {r['process_peak_rss_bytes'] / GIB:5.2f} GiB)  {r['flops'] / 1e9:8.1f} GFLOP  "
                f"{100 * r['fraction_of_gemm_rate']:.0f}% of GEMM rate ({r['fraction_basis']})"
            )
    report["sweep"] = sweep

    if not args.no_fit:
        _progress("full L-BFGS fit")
        fit = time_full_fit(args.n, args.q, args.d)
        report["fit"] = fit
        print(
            f"\nFull L-BFGS fit at N={args.n}, D={args.d}, {fit['dtype']}: {fit['rerun_s']:.2f} s "
            f"({fit['first_call_s']:.2f} s with compilation), {fit['iterations']} iterations, "
            f"converged={fit['converged']}"
        )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

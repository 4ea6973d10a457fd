"""Compare two ``results.parquet`` frames column by column: are they the same table?

    python -m benchmarks.compare_results BEFORE/results.parquet AFTER/results.parquet

Both frames are sorted by the key columns (screen, model, embedding, size, fold,
pert), so the order parts were merged in does not matter. For every float column it
prints the largest absolute difference, the normwise relative one (relative to the
column's scale, max |value| over both frames: max |a - b| / max |column|), the largest
elementwise relative one (relative to max(|before|, |after|)), NaN matching NaN, how
many values are not bit-identical, and whether NaNs sit in the same places; for every
other column whether it is equal. Exit status 1 if a non-float column differs or a
float column's normwise difference exceeds ``--rtol`` (default 1e-12).
"""

from __future__ import annotations

import argparse
import sys
from typing import NamedTuple

import numpy as np
import polars as pl

KEYS = ("screen", "model", "embedding", "size", "fold", "pert")


class FloatDifferences(NamedTuple):
    """How two float columns differ, over the entries that are numbers in both."""

    abs_max: float  # max |x - y|
    normwise: float  # max |x - y| / max |x, y| over the column (0 for an all-zero column)
    rel_max: float  # max |x - y| / max(|x|, |y|) elementwise
    not_identical: int  # entries not bit-identical (a NaN against a number counts)
    same_nan: bool  # NaNs in the same places


def float_differences(x: np.ndarray, y: np.ndarray) -> FloatDifferences:
    """:class:`FloatDifferences` of columns x and y (n,)."""
    same_nan = bool(np.array_equal(np.isnan(x), np.isnan(y)))
    both = ~(np.isnan(x) | np.isnan(y))
    diff = np.abs(x[both] - y[both])
    scale = np.maximum(np.abs(x[both]), np.abs(y[both]))
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    column_scale = scale.max(initial=0.0)
    abs_max = float(diff.max(initial=0.0))
    normwise = abs_max / column_scale if column_scale > 0 else 0.0
    differ = int(np.sum(x[both] != y[both])) + int(np.sum(np.isnan(x) != np.isnan(y)))
    return FloatDifferences(abs_max, float(normwise), float(rel.max(initial=0.0)), differ, same_nan)


def compare(before: pl.DataFrame, after: pl.DataFrame, rtol: float) -> tuple[list[str], bool]:
    """Printable lines, and whether the frames agree (non-floats equal, floats within ``rtol``)."""
    lines, ok = [f"rows: {before.height} against {after.height}"], before.height == after.height
    if set(before.columns) != set(after.columns):
        lines.append(
            f"columns differ: only before {sorted(set(before.columns) - set(after.columns))}, "
            f"only after {sorted(set(after.columns) - set(before.columns))}"
        )
        return lines, False
    if before.schema != after.select(before.columns).schema:
        lines.append("column types differ")
        ok = False
    if not ok:
        return lines, False
    keys = [k for k in KEYS if k in before.columns]
    before, after = before.sort(keys), after.sort(keys).select(before.columns)
    for column, kind in before.schema.items():
        if kind.is_float():
            x, y = before[column].to_numpy(), after[column].to_numpy()
            d = float_differences(x, y)
            ok &= d.same_nan and d.normwise <= rtol
            lines.append(
                f"{column:24s} float  max abs {d.abs_max:.3g}  normwise {d.normwise:.3g}  "
                f"elementwise rel {d.rel_max:.3g}  "
                f"not bit-identical {d.not_identical}/{len(x)}  NaNs {'same' if d.same_nan else 'DIFFER'}"
            )
        else:
            equal = before[column].equals(after[column])
            ok &= equal
            lines.append(f"{column:24s} {str(kind):6s} {'equal' if equal else 'DIFFER'}")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument(
        "--rtol",
        type=float,
        default=1e-12,
        help="largest normwise difference allowed, max |a - b| / max |column| (default 1e-12)",
    )
    args = parser.parse_args(argv)
    lines, ok = compare(pl.read_parquet(args.before), pl.read_parquet(args.after), args.rtol)
    print("\n".join(lines))
    print(f"the same table (within rtol {args.rtol:g})" if ok else f"DIFFERENT (rtol {args.rtol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Do two results tables of one grid agree?

The question behind "the results never depend on the executor" and "a resumed
run ends with the same table": the same rows in the same order, every
identifying (non-float) value equal, every metric within a relative tolerance.
Floats are compared with |x - y| <= rtol (1 + |x|), and NaN matches NaN (a
model without a variance has NaN calibration columns in both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

#: Left out by default: the GP's record, text whose LML's last digits depend on the
#: threads its fit ran on (:mod:`gpllm.evaluate.runner.numerics`), compared exactly if kept.
UNCOMPARED = ("hyperparameters",)


def table_differences(
    a: pl.DataFrame, b: pl.DataFrame, *, rtol: float = 1e-6, ignore: Sequence[str] = UNCOMPARED
) -> list[str]:
    """What differs between results tables ``a`` and ``b``, one line each; [] if they agree.

    Columns (names and types) first; then the rows' identifying columns, in order;
    then each float column, naming how many values differ and the largest difference.
    """
    a, b = a.drop([c for c in ignore if c in a.columns]), b.drop([c for c in ignore if c in b.columns])
    if a.schema != b.schema:
        return [f"columns differ: {dict(a.schema)} against {dict(b.schema)}"]
    if a.height != b.height:
        return [f"{a.height} rows against {b.height}"]
    floats = [c for c, kind in a.schema.items() if kind.is_float()]
    keys = [c for c in a.columns if c not in floats]
    if not a.select(keys).equals(b.select(keys)):
        differ = [c for c in keys if not a[c].equals(b[c])]
        return [f"the rows differ in {differ}: not the same grid, or not in the same order"]
    out = []
    for column in floats:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        half_nan = np.isnan(x) != np.isnan(y)
        with np.errstate(invalid="ignore"):
            far = np.abs(x - y) > rtol * (1 + np.abs(x))  # False wherever a NaN is involved
        if far.any() or half_nan.any():
            how = [f"largest {np.abs(x - y)[far].max():.3g}"] if far.any() else []
            how += [f"{int(half_nan.sum())} NaN against a number"] if half_nan.any() else []
            out.append(
                f"{column}: {int(far.sum() + half_nan.sum())} of {len(x)} values differ by more "
                f"than rtol={rtol:g} ({', '.join(how)})"
            )
    return out

"""Dense linear algebra by blocks: skip the zeros of triangular operands, and
the mirror half of symmetric results.

XLA offers GEMM, potrf and trsm, none of which knows when an operand is
triangular or when only half of a symmetric result is needed. Split the N
rows into b blocks (static boundaries e_0 < ... < e_b) and issue only the
block products that are not zero and not the mirror image of one already
made. Operands are lower triangular (N, N) or lower *trapezoidal* (N, R),
R <= N, with X[i, j] = 0 for j > i: the gram path's factor R^T of Y^T = Q R
and everything made from it. Columns are blocked at the same boundaries as
rows, clipped to R.

FLOPs against the dense call (N = R), up to the blocks' granularity:
:func:`inverse_lower` N^3/3 (trsm against I: N^3), :func:`triangular_times` on a
triangular operand N^3/3 (lower) and 2 N^3/3 (upper) (GEMM: 2 N^3),
:func:`gram_of_upper` N^3/3 (2 N^3), :func:`lower_blocks_of_product`
(b + 1) / 2b of the GEMM, and about 1/3 of it for a trapezoidal operand.
Everything but the diagonal blocks' small solves is a GEMM, which XLA runs
at ~1.5x the rate of LAPACK's trsm on CPU.

Every function is pure and traceable (jit, vmap, grad); the block boundaries
depend only on static shapes. Below ``MIN_BLOCKED`` rows there is one block
and each function is one plain call.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

#: Rows per block: large enough for GEMMs near peak rate, small enough that the
#: skipped zeros matter. Measured on CPU at N = 1,400: 3-6 blocks all ~2.5x faster
#: than one GEMM for W W^T with a triangular W.
BLOCK_ROWS = 384
#: Below this many rows one plain call is used: from here on even two blocks beat one
#: (measured on one CPU core: 1.2-1.5x at N = 200-400 for Eq. 1's value + gradient).
MIN_BLOCKED = 160
#: At most this many blocks per side. XLA keeps the blocks' operand slices alive
#: together, and they grow with b: at N = 6,400 the value + gradient's temporaries were
#: 8.7, 9.8 and 13.5 N^2 for b = 4, 8 and 16, at the same speed for 8 and 16 (N = 10,000).
MAX_BLOCKS = 8

Blocks = dict[tuple[int, int], jax.Array]  # (i, j) with j <= i -> block (e_i:e_{i+1}, e_j:e_{j+1})


def block_edges(n: int) -> tuple[int, ...]:
    """Static boundaries 0 = e_0 < e_1 < ... < e_b = n of b near-equal row blocks:
    at least 2 from ``MIN_BLOCKED`` rows on, at most ``MAX_BLOCKS``."""
    b = 1 if n < MIN_BLOCKED else min(MAX_BLOCKS, max(2, math.ceil(n / BLOCK_ROWS)))
    return tuple(round(i * n / b) for i in range(b + 1))


def _placed(shape: tuple[int, int], dtype, blocks) -> jax.Array:
    """A zero (shape) array with each (row, col, block) of ``blocks`` written at (row, col).

    Written one by one into one buffer (XLA updates it in place) rather than
    concatenated from rows of blocks, which copies each row once more.
    """
    out = jnp.zeros(shape, dtype)
    for row, col, block in blocks:
        out = lax.dynamic_update_slice(out, block.astype(dtype), (row, col))
    return out


def _column_blocks(e: tuple[int, ...], r: int) -> list[tuple[int, int, int]]:
    """(j, start, stop) of the column blocks of an (N, R) operand: the row boundaries clipped to R."""
    return [(j, e[j], min(e[j + 1], r)) for j in range(len(e) - 1) if e[j] < r]


def triangular_times(T: jax.Array, X: jax.Array, *, lower: bool, trapezoidal: bool) -> jax.Array:
    """T X (N, R) for triangular T (N, N) and X (N, R): block (i, j) sums only the rows k
    where both are nonzero: k < e_{i+1} for a lower T, k >= e_i for an upper one, and
    k >= e_j for a ``trapezoidal`` X (a lower T then gives a trapezoidal product).
    Neighbouring column blocks that share those rows are one GEMM."""
    n, r = X.shape
    e = block_edges(n)
    if len(e) == 2:
        return T @ X
    columns = _column_blocks(e, r) if trapezoidal else [(0, 0, r)]
    blocks = []
    for i in range(len(e) - 1):
        start, stop = e[i], e[i + 1]
        hi = stop if lower else n
        runs: list[list[int]] = []  # [lo, first column, last column] per GEMM
        for _, c0, c1 in columns:
            lo = max(0 if lower else start, c0 if trapezoidal else 0)
            if lo >= hi:
                continue
            if runs and runs[-1][0] == lo:
                runs[-1][2] = c1
            else:
                runs.append([lo, c0, c1])
        blocks += [(start, c0, T[start:stop, lo:hi] @ X[lo:hi, c0:c1]) for lo, c0, c1 in runs]
    return _placed((n, r), X.dtype, blocks)


def gram_of_upper(U: jax.Array) -> Blocks:
    """The blocks on and below the diagonal of U U^T for upper-triangular U (N, N)
    (= A^{-1} for U = L^{-T}): block (i, j) sums only columns k >= e_i."""
    e = block_edges(U.shape[0])
    if len(e) == 2:
        return {(0, 0): U @ U.T}

    def rows(i: int) -> slice:
        return slice(e[i], e[i + 1])

    return {(i, j): U[rows(i), e[i] :] @ U[rows(j), e[i] :].T for i in range(len(e) - 1) for j in range(i + 1)}


def lower_blocks_of_product(W: jax.Array, *, trapezoidal: bool) -> Blocks:
    """The blocks on and below the diagonal of W W^T for W (N, R); for a ``trapezoidal``
    W block (i, j) sums only columns < min(e_{j+1}, R)."""
    n, r = W.shape
    e = block_edges(n)
    if len(e) == 2:
        return {(0, 0): W @ W.T}

    def rows(i: int) -> slice:
        return slice(e[i], e[i + 1])

    def cols(j: int) -> slice:
        return slice(0, min(e[j + 1], r) if trapezoidal else r)

    return {(i, j): W[rows(i), cols(j)] @ W[rows(j), cols(j)].T for i in range(len(e) - 1) for j in range(i + 1)}


def from_lower_blocks(lower: Blocks) -> jax.Array:
    """The symmetric matrix whose blocks on and below the diagonal are ``lower[i, j]``."""
    b = 1 + max(i for i, _ in lower)
    if b == 1:
        return lower[0, 0]
    e = list(itertools.accumulate((lower[i, 0].shape[0] for i in range(b)), initial=0))
    mirrored = [(e[j], e[i], block.T) for (i, j), block in lower.items() if i != j]
    return _placed(
        (e[-1], e[-1]), lower[0, 0].dtype, [(e[i], e[j], block) for (i, j), block in lower.items()] + mirrored
    )


def solve_lower(L: jax.Array, F: jax.Array, *, trapezoidal: bool) -> jax.Array:
    """L^{-1} F (N, R) for lower-triangular L; for a ``trapezoidal`` F the result is too,
    and block column j solves only rows e_j.. against the trailing block of L."""
    n, r = F.shape
    e = block_edges(n)
    if not trapezoidal or len(e) == 2:
        return lax.linalg.triangular_solve(L, F, left_side=True, lower=True)
    blocks = [
        (
            start,
            start,
            lax.linalg.triangular_solve(L[start:, start:], F[start:, start:stop], left_side=True, lower=True),
        )
        for _, start, stop in _column_blocks(e, r)
    ]
    return _placed((n, r), F.dtype, blocks)


def inverse_lower(L: jax.Array) -> jax.Array:
    """V = L^{-1} row block by row block: V_ii = L_ii^{-1}, and for j < i
    V_ij = -V_ii sum_{e_j <= k < e_i} L_ik V_kj, one GEMM per block (N^3/3 in all)."""
    n = L.shape[0]
    e = block_edges(n)
    b = len(e) - 1
    if b == 1:
        return lax.linalg.triangular_solve(L, jnp.eye(n, dtype=L.dtype), left_side=True, lower=True)
    V = jnp.zeros_like(L)
    for i in range(b):
        start, stop = e[i], e[i + 1]
        diag = lax.linalg.triangular_solve(
            L[start:stop, start:stop], jnp.eye(stop - start, dtype=L.dtype), left_side=True, lower=True
        )
        V = lax.dynamic_update_slice(V, diag, (start, start))
        for j in range(i):
            block = -diag @ (L[start:stop, e[j] : start] @ V[e[j] : start, e[j] : e[j + 1]])
            V = lax.dynamic_update_slice(V, block, (start, e[j]))
    return V

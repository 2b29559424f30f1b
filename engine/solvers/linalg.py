"""Small dense linear algebra written out for batches of tiny systems."""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

# Above this many unknowns the written-out forms below grow as k^3 (Cholesky) or k^2 (products)
# scalar ops a lane, and compiling them takes longer than it saves (a 31-parameter law's LM step
# took tens of seconds to compile): larger systems use XLA's own factorisation and reductions.
UNROLL_MAX = 8


def spd_solve(matrix, rhs):
    """Solve a small symmetric positive-definite system by an unrolled Cholesky factorisation
    (k is static and tiny; batched LAPACK calls on 3x3 systems were the scan's bottleneck)."""
    k = rhs.shape[-1]
    if k > UNROLL_MAX:
        low = jnp.linalg.cholesky(matrix)
        forward = solve_triangular(low, rhs[..., None], lower=True)
        return solve_triangular(jnp.swapaxes(low, -1, -2), forward, lower=False)[..., 0]
    low = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            total = matrix[..., i, j] - sum(low[i][m] * low[j][m] for m in range(j))
            low[i][j] = jnp.sqrt(total) if i == j else total / low[j][j]
    forward = []
    for i in range(k):
        forward.append((rhs[..., i] - sum(low[i][m] * forward[m] for m in range(i))) / low[i][i])
    solution = [None] * k
    for i in reversed(range(k)):
        solution[i] = (forward[i] - sum(low[m][i] * solution[m] for m in range(i + 1, k))) / low[i][i]
    return jnp.stack(solution, axis=-1)


def dot(a, b):
    """sum_i a_i b_i over the last axis, added in index order. Written out so that every lane adds
    in the same order whatever the batch's shape (a vmapped `jnp.dot` becomes a batched product
    whose blocking, and so its rounding, can depend on the batch size)."""
    if a.shape[-1] > UNROLL_MAX:
        return jnp.sum(a * b, axis=-1)  # an elementwise product and a reduce, never a batched matmul
    total = a[..., 0] * b[..., 0]
    for i in range(1, a.shape[-1]):
        total = total + a[..., i] * b[..., i]
    return total


def quadratic(x, matrix):
    """x^T M x over the last axes (`dot` of x with M x, each row added in index order)."""
    if x.shape[-1] > UNROLL_MAX:
        return dot(x, jnp.sum(matrix * x[..., None, :], axis=-1))
    return dot(x, jnp.stack([dot(matrix[..., i, :], x) for i in range(x.shape[-1])], axis=-1))

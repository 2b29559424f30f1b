"""Small dense linear algebra written out for batches of tiny systems."""

from __future__ import annotations

import jax.numpy as jnp


def spd_solve(matrix, rhs):
    """Solve a small symmetric positive-definite system by an unrolled Cholesky factorisation
    (k is static and tiny; batched LAPACK calls on 3x3 systems were the scan's bottleneck)."""
    k = rhs.shape[-1]
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

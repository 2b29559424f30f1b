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


def dot(a, b):
    """sum_i a_i b_i over the last axis, added in index order. Written out so that every lane adds
    in the same order whatever the batch's shape (a vmapped `jnp.dot` becomes a batched product
    whose blocking, and so its rounding, can depend on the batch size)."""
    total = a[..., 0] * b[..., 0]
    for i in range(1, a.shape[-1]):
        total = total + a[..., i] * b[..., i]
    return total


def quadratic(x, matrix):
    """x^T M x over the last axes (`dot` of x with M x, each row added in index order)."""
    return dot(x, jnp.stack([dot(matrix[..., i, :], x) for i in range(x.shape[-1])], axis=-1))

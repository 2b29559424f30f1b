"""Small dense linear algebra written out for batches of tiny systems."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Above this many unknowns the written-out forms below grow as k^3 (Cholesky) or k^2 (products)
# scalar ops a lane, and compiling them takes longer than it saves (a 31-parameter law's LM step
# took tens of seconds to compile): larger systems loop over columns (`_looped_solve`) and reduce.
UNROLL_MAX = 8


def _looped_solve(matrix, rhs):
    """Cholesky solve as loops over the k columns, in plain XLA ops (a k x k product per column).

    Not `jnp.linalg.cholesky`: on the CPU its batched LAPACK kernel splits the batch over the
    intra-op thread pool and waits for the parts; with a pool program running on every CPU device,
    each device's execution holds a pool thread while it waits and the job deadlocked."""
    k = rhs.shape[-1]
    index = jnp.arange(k)

    def column(j, low):
        # v_i = A_ij - sum_m L_im L_jm (the columns m >= j of L are still zero).
        v = matrix[..., :, j] - jnp.sum(low * low[..., j, None, :], axis=-1)
        d = jnp.sqrt(v[..., j])
        col = jnp.where(index > j, v / d[..., None], jnp.where(index == j, d[..., None], 0.0))
        return low.at[..., :, j].set(col)

    low = jax.lax.fori_loop(0, k, column, jnp.zeros_like(matrix))
    diag = jnp.diagonal(low, axis1=-2, axis2=-1)

    def forward(i, y):
        y_i = (rhs[..., i] - jnp.sum(low[..., i, :] * y, axis=-1)) / diag[..., i]
        return y.at[..., i].set(y_i)

    y = jax.lax.fori_loop(0, k, forward, jnp.zeros_like(rhs))

    def backward(step, x):
        i = k - 1 - step
        x_i = (y[..., i] - jnp.sum(low[..., :, i] * x, axis=-1)) / diag[..., i]
        return x.at[..., i].set(x_i)

    return jax.lax.fori_loop(0, k, backward, jnp.zeros_like(rhs))


def spd_solve(matrix, rhs):
    """Solve a small symmetric positive-definite system by an unrolled Cholesky factorisation
    (k is static and tiny; batched LAPACK calls on 3x3 systems were the scan's bottleneck)."""
    k = rhs.shape[-1]
    if k > UNROLL_MAX:
        return _looped_solve(matrix, rhs)
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


# Sums over a task's points are taken CHUNK points at a time, in point order (every padded length is
# a multiple of 8, `plan.bucket_size`): the result then does not depend on how far the task was
# padded, i.e. on which tasks shared its batch. (One product over all the points rounds by the
# padded length: 300-point tasks got other variable-projection starts alone than beside 700-point
# ones.)
CHUNK = 8


def point_sum(contribution, *arrays, chunk: int = CHUNK):
    """sum over the points (the last axis of every array) of `contribution(*chunks)` (an array or a
    tuple of arrays), one chunk of `chunk` points after another (padded points, of weight 0, add
    exact zeros; chunks start at the same points however far the task is padded)."""
    n = arrays[0].shape[-1]
    pad = -n % chunk
    if pad:
        arrays = tuple(jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, pad)]) for a in arrays)
    chunks = [jnp.moveaxis(a.reshape(a.shape[:-1] + (-1, chunk)), -2, 0) for a in arrays]  # [n_chunks, ..., chunk]
    first = contribution(*(c[0] for c in chunks))
    if chunks[0].shape[0] == 1:
        return first

    def add(total, parts):
        return jax.tree.map(jnp.add, total, contribution(*parts)), None

    total, _ = jax.lax.scan(add, first, [c[1:] for c in chunks])
    return total


def _to_power_of_two(x, axis: int, size: int):
    """x zero-padded along `axis` to `size` (a length-1 axis, which broadcasts, stays as it is)."""
    if x.shape[axis] in (1, size):
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, pad)


def power_of_two_at_least(n: int) -> int:
    """The smallest power of two >= n (at least 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def halving_sum(x, axes: tuple[int, ...], zero=None):
    """Sum of x over `axes` by halving: each axis is zero-padded to a power of two, then its second
    half is added elementwise to its first until one entry is left. A zero-padded array thus sums to
    the last bit as its unpadded prefix (padding only adds exact zeros, at the top of the tree),
    however far it was padded, where XLA's reductions and dot products round by the shape.

    zero: a zero computed at run time (never a constant), added to every entry first. Where x is a
    product, LLVM may fuse it into the first addition as a fused multiply-add, or not, depending on
    how XLA split the fusions for the shape; once x + zero is the leaf, both ways give the product
    rounded once, and every later addition adds sums."""
    if zero is not None:
        x = x + zero
    for axis in sorted({a % x.ndim for a in axes}, reverse=True):
        size = power_of_two_at_least(x.shape[axis])
        x = _to_power_of_two(x, axis, size)
        while size > 1:
            size //= 2
            x = jax.lax.slice_in_dim(x, 0, size, axis=axis) + jax.lax.slice_in_dim(x, size, 2 * size, axis=axis)
        x = jnp.squeeze(x, axis)
    return x


def product_sum(a, b, axis: int, zero):
    """`halving_sum(a * b, (axis,), zero)` (a and b broadcast against each other, `axis` counted
    from the end, negative) without forming a * b: the first halving multiplies slices of a and b,
    so XLA keeps the full product out of memory."""
    size = power_of_two_at_least(max(a.shape[axis], b.shape[axis]))
    a, b = _to_power_of_two(a, axis, size), _to_power_of_two(b, axis, size)
    if size == 1:
        return jnp.squeeze(a * b + zero, axis)

    def half(x, start):
        return x if x.shape[axis] == 1 else jax.lax.slice_in_dim(x, start, start + size // 2, axis=axis % x.ndim)

    first = (half(a, 0) * half(b, 0) + zero) + (half(a, size // 2) * half(b, size // 2) + zero)
    return halving_sum(first, (axis,))

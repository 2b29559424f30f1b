"""Variable-projection initialisation.

For laws whose prediction is linear in some coefficients once the others are fixed
(`law.varpro`: y = basis(theta_nl) @ coef), scan a grid of the nonlinear parameters, solve the
linear coefficients in closed form at each grid point (non-negative where required, by trying
every active set: there are at most a handful of coefficients), re-rank the best points by the true
objective, and hand the best few to the nonlinear solver.

The scan minimises a weighted least-squares surrogate of the objective: raw residuals for the raw
space, and residuals relative to y (weights 1/y^2) for the log space, since log y - log yhat
~ (y - yhat)/y near a good fit.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ..objectives import point_residuals
from .linalg import dot, point_sum, spd_solve


def _subsets(n_linear: int) -> np.ndarray:
    masks = [m for m in itertools.product([True, False], repeat=n_linear) if any(m)]
    return np.array(masks, dtype=bool)


def _solve_linear(gram, rhs, y_wy, nonneg: bool):
    """Least squares min ||W^(1/2)(y - B c)||^2 from normal equations, optionally with c >= 0.

    gram: [k, k], rhs: [k], y_wy: scalar -> (coef [k], residual sum of squares).
    """
    k = rhs.shape[0]
    ridge = 1e-13 * jnp.trace(gram) / k
    eye = jnp.eye(k)

    def restricted(mask):
        pair = mask[:, None] & mask[None, :]
        g = jnp.where(pair, gram, eye) + ridge * jnp.where(mask, 1.0, 0.0) * eye
        coef = jnp.where(mask, spd_solve(g, jnp.where(mask, rhs, 0.0)), 0.0)
        ssr = y_wy - 2.0 * coef @ rhs + coef @ gram @ coef
        ok = jnp.all(jnp.isfinite(coef)) & (~nonneg | jnp.all(coef >= 0))
        return coef, jnp.where(ok, ssr, jnp.inf)

    masks = _subsets(k) if nonneg else np.ones((1, k), dtype=bool)
    coefs, ssrs = jax.vmap(restricted)(jnp.asarray(masks))
    best = jnp.argmin(ssrs)
    return coefs[best], ssrs[best]


def grid_points(varpro) -> np.ndarray:
    """The scan grid as [n_grid, n_nonlinear]."""
    return np.array(list(itertools.product(*varpro.grid)), dtype=np.float64)


def _separable_normal_equations(spec, feats, weights, y):
    """Normal equations at every product-grid point from 1-D scans: (gram [G, k, k], rhs [G, k]).

    Column c depends on nonlinear parameter `spec.depends[c]` only (or none), so each Gram entry is
    a 1-D sum over one parameter's grid, or a matrix product over two parameters' grids.
    """
    grids = [jnp.asarray(g) for g in spec.grid]
    shape = tuple(g.shape[0] for g in grids)
    first = jnp.asarray([g[0] for g in spec.grid])
    n_nl = len(grids)

    columns = []  # per basis column: [G_d, n_points] or [n_points]
    for c, d in enumerate(spec.depends):
        if d is None:
            columns.append(spec.basis(first, feats)[:, c])
        else:
            columns.append(jax.vmap(lambda v, d=d, c=c: spec.basis(first.at[d].set(v), feats)[:, c])(grids[d]))

    def place(values, axes):
        """Broadcast an array whose dims are the nonlinear params `axes` into the grid shape."""
        order = sorted(range(len(axes)), key=lambda i: axes[i])
        values = jnp.transpose(values, order) if len(axes) > 1 else values
        sizes = [shape[i] if i in axes else 1 for i in range(n_nl)]
        return jnp.broadcast_to(values.reshape(sizes), shape)

    def inner(a, da, b, db):
        wa = a * weights
        if da is None and db is None:
            return place(point_sum(dot, wa, b), ())
        if db is None:
            return place(point_sum(lambda x, y: x @ y, wa, b), (da,))
        if da is None:
            return place(point_sum(lambda x, y: x @ y, b, wa), (db,))
        if da == db:
            return place(point_sum(dot, wa, b), (da,))
        return place(point_sum(lambda x, y: x @ y.T, wa, b), (da, db))

    k = len(columns)
    gram = jnp.stack(
        [
            jnp.stack([inner(columns[i], spec.depends[i], columns[j], spec.depends[j]) for j in range(k)], -1)
            for i in range(k)
        ],
        -2,
    )
    rhs = jnp.stack([inner(columns[i], spec.depends[i], y, None) for i in range(k)], -1)
    return gram.reshape((-1, k, k)), rhs.reshape((-1, k))


def _grid_local_minima(values, shape: tuple[int, ...]):
    """values: [prod(shape)] on a C-ordered grid -> bool mask of strict local minima along every axis."""
    cube = values.reshape(shape)
    keep = jnp.isfinite(cube)
    for axis in range(len(shape)):
        pad = [(0, 0)] * len(shape)
        pad[axis] = (1, 1)
        padded = jnp.pad(cube, pad, constant_values=jnp.inf)
        before = jax.lax.slice_in_dim(padded, 0, shape[axis], axis=axis)
        after = jax.lax.slice_in_dim(padded, 2, shape[axis] + 2, axis=axis)
        # Strictly below both neighbours (beyond rounding): flat plateaus, where a coefficient is pinned at
        # zero and its exponent no longer matters, are not basins.
        margin = cube + 1e-10 * jnp.abs(cube)
        keep = keep & (margin < before) & (margin < after)
    return keep.reshape(-1)


def _cell_best(values, shape: tuple[int, ...], n_cells: int):
    """values: [prod(shape)] on a C-ordered grid -> bool mask of the best point in each of about `n_cells`
    equal blocks of the grid."""
    blocks = max(1, round(n_cells ** (1.0 / len(shape))))
    cell = jnp.zeros(shape, dtype=jnp.int32)
    for axis, size in enumerate(shape):
        index = jnp.arange(size) * min(blocks, size) // size
        cell = cell * min(blocks, size) + jnp.expand_dims(index, tuple(a for a in range(len(shape)) if a != axis))
    cell = cell.reshape(-1)
    n_segments = int(np.prod([min(blocks, size) for size in shape]))
    best = jax.ops.segment_min(values, cell, num_segments=n_segments)
    return jnp.isfinite(values) & (values <= best[cell])


def _map_in_batches(fn, xs, batch_size: int):
    """`lax.map(fn, xs, batch_size=...)` over inputs padded (with copies of the first) to a whole
    number of batches, the padding's results dropped: a remainder batch would trace and compile `fn`
    a second time (the Chinchilla grid's 40,401 points left 465)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    batch_size = min(batch_size, n)
    pad = -n % batch_size
    if pad:
        xs = jax.tree.map(lambda x: jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])]), xs)
    out = jax.lax.map(fn, xs, batch_size=batch_size)
    return jax.tree.map(lambda x: x[:n], out)


def varpro_starts(law, objective, problem, n_starts: int, n_candidates: int = 64, batch_size: int = 1024):
    """Best `n_starts` starting points for ONE task.

    problem: a `Problem` without batch axis. Returns (theta [n_starts, n_params], objective [n_starts]).
    """
    spec = law.varpro
    grid = jnp.asarray(grid_points(spec))
    if objective.space == "log":
        y = jnp.exp(problem.target)
        weights = problem.coeff / (y * y)
    else:
        y = problem.target
        weights = problem.coeff
    y_wy = point_sum(dot, weights * y, y)

    if spec.depends is not None:
        gram, rhs = _separable_normal_equations(spec, problem.feats, weights, y)
        coefs, ssrs = _map_in_batches(
            lambda args: _solve_linear(args[0], args[1], y_wy, spec.nonneg), (gram, rhs), batch_size
        )
    else:

        def scan_point(theta_nl):
            basis = spec.basis(theta_nl, problem.feats).T  # [k, n_points]
            weighted = basis * weights
            gram = point_sum(lambda x, z: x @ z.T, weighted, basis)
            return _solve_linear(gram, point_sum(lambda x, z: x @ z, weighted, y), y_wy, spec.nonneg)

        coefs, ssrs = _map_in_batches(scan_point, grid, batch_size)

    # Candidates, in this order: the strict local minima of the surrogate on the grid (one per basin), the
    # best point of each coarse cell of the grid (spread: a robust loss can prefer a basin the least-squares
    # surrogate does not even have), then the best remaining points. Re-ranked by the true objective below.
    ssrs = jnp.where(jnp.isfinite(ssrs), ssrs, jnp.inf)
    shape = tuple(len(axis) for axis in spec.grid)
    tier = jnp.where(_grid_local_minima(ssrs, shape), 0, jnp.where(_cell_best(ssrs, shape, n_candidates), 1, 2))
    order = jnp.lexsort((ssrs, tier))
    top = order[: min(n_candidates, grid.shape[0])]

    def candidate(i):
        coef = coefs[i]
        if spec.nonneg:
            # Zero coefficients cannot be logged: start them tiny instead.
            coef = jnp.maximum(coef, 1e-10 * jnp.max(jnp.abs(coef)) + 1e-300)
        theta = spec.assemble(grid[i], coef)
        s = point_residuals(law, objective, theta, problem.feats, problem.target, problem.coeff)
        value = 0.5 * point_sum(dot, s, s)
        return theta, jnp.where(jnp.isfinite(value), value, jnp.inf)

    thetas, values = jax.vmap(candidate)(top)
    _, order = jax.lax.top_k(-values, min(n_starts, top.shape[0]))
    return thetas[order], values[order]

"""Sums over a table of distinct inputs instead of over the points, for separable laws.

A separable law (`law.separable`) predicts  c(theta) + row(theta, x_a) + column(theta, z_b)  at a
point whose first input takes its a-th distinct value and whose second its b-th. A task's points
then only enter the least-squares sums through the table `counts[a, b]` (the summed point weights
of cell (a, b)) and the cells' weighted mean targets `mean[a, b]`:

    f     = sum_ab counts r_ab^2 + within,     r_ab = c + row_a + column_b - mean_ab
    grad  = 2 sum_ab counts r_ab J_ab,         J_ab = dc + drow_a + dcolumn_b
    J^T J = 2 sum_ab counts J_ab J_ab^T

where `within` is the weighted spread of the targets inside the cells (zero when no two points share
both inputs). The exponentials run once per distinct value, not per point, and what is left per
cell is a few additions. Learning curves of a few model sizes on a shared token grid (GPT-3 in the
Hitchhiker data: 120,516 points, 8 sizes, 1,478 distinct token counts) shrink several-fold.

f is summed cell by cell (exact, like the point sums). The row and column sums of counts * r, which
the gradient needs, are expanded into matrix products (`counts @ column`, `row @ counts`): summed
cell by cell next to f, XLA on the CPU ran 6x slower; expanded, they cancel to ~1e-13 of their
terms, far below what the solvers' tolerances can see.

Written for ONE task (its restarts as the leading axis of theta, so the products are matrix
products) and vmapped over the tasks.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .problem import Grid


def _terms(separable, theta, grid: Grid):
    """(constant, row, column) Terms of the law for theta: [restarts, n_params]."""
    params = tuple(theta[:, i] for i in range(theta.shape[1]))  # [restarts] each
    columns = tuple(p[:, None] for p in params)  # [restarts, 1]: broadcasts against the values
    return (
        separable.constant(params),
        separable.row(columns, grid.rows[None, :]),
        separable.column(columns, grid.columns[None, :]),
    )


class GridEvaluator(eqx.Module):
    """Per-lane f, g (and J^T J) of squared residuals in the raw space, from the `Grid`s of a batch of
    tasks x restarts. Same call as `Evaluator`; `law.separable` must be set.

    law: the law; free: indices of fitted parameters; hessian: whether to form J^T J.
    """

    law: object = eqx.field(static=True)
    free: tuple[int, ...] = eqx.field(static=True)
    hessian: bool = eqx.field(static=True, default=True)

    def layout(self, problems, n_restarts: int):
        """The tables' margins, once per solver call: row and column weights and weighted target
        sums (`[tasks, n_rows]`, `[tasks, n_columns]`) and total weight `[tasks]`."""
        grid = problems.grid
        weighted = grid.counts * grid.mean
        return {
            "row_weight": grid.counts.sum(axis=2),
            "column_weight": grid.counts.sum(axis=1),
            "weight": grid.counts.sum(axis=(1, 2)),
            "row_target": weighted.sum(axis=2),
            "column_target": weighted.sum(axis=1),
        }

    def __call__(self, theta, problems, points=None):
        """theta: [tasks, restarts, n_free]; problems: `Problem` with a `grid`, leading [tasks].

        Returns dict f [tasks, restarts], grad [tasks, restarts, n_free] and, with `hessian`,
        hess [tasks, restarts, n_free, n_free].
        """
        if points is None:
            points = self.layout(problems, theta.shape[1])
        return jax.vmap(self._one)(theta, problems.theta_fixed, problems.grid, points)

    def _one(self, theta, theta_fixed, grid: Grid, margins):
        n_restarts = theta.shape[0]
        full = jnp.broadcast_to(theta_fixed, (n_restarts, theta_fixed.shape[0]))
        full = full.at[:, jnp.asarray(self.free)].set(theta)
        (c0, d0), (row, d_row), (column, d_column) = _terms(self.law.separable, full, grid)
        level = c0[:, None] + row  # [restarts, n_rows]: prediction less the column term
        r = level[:, :, None] + column[:, None, :] - grid.mean[None]  # [restarts, n_rows, n_columns]
        f = jnp.sum(grid.counts[None] * r * r, axis=(1, 2)) + grid.within

        # counts @ v for the column term and for each column derivative (distinct arrays only: a
        # term is often its own derivative), as one matrix product.
        wanted = [column] + ([d_column[p] for p in self.free if p in d_column] if self.hessian else [])
        distinct = list({id(x): x for x in wanted}.values())
        slot = {id(x): k for k, x in enumerate(distinct)}
        products = jnp.einsum("ab,kRb->kRa", grid.counts, jnp.stack(distinct))  # [k, restarts, n_rows]

        def times_counts(x):  # counts @ x for a column array x [restarts, n_columns]
            return products[slot[id(x)]]

        # Sums of counts * r over each row and column, expanded (see the module docstring).
        row_sum = margins["row_weight"] * level + times_counts(column) - margins["row_target"]
        column_sum = level @ grid.counts + margins["column_weight"] * column - margins["column_target"]
        total = row_sum.sum(axis=1)

        def derivative(p):  # (constant part [restarts] or None, row part, column part)
            return d0.get(p), d_row.get(p), d_column.get(p)

        grad = []
        for p in self.free:
            const, along_rows, along_columns = derivative(p)
            g = jnp.zeros(n_restarts)
            if const is not None:
                g = g + const * total
            if along_rows is not None:
                g = g + jnp.sum(along_rows * row_sum, axis=1)
            if along_columns is not None:
                g = g + jnp.sum(along_columns * column_sum, axis=1)
            grad.append(2.0 * g)
        out = {"f": f, "grad": jnp.stack(grad, axis=-1)}
        if not self.hessian:
            return out

        def margin_sum(x, kind):  # sum_ab counts x_ab for a part that varies along one axis
            weight = margins["row_weight"] if kind == "row" else margins["column_weight"]
            return jnp.sum(weight * x, axis=1)

        def weighted_product(x, kind_x, y, kind_y):
            """sum_ab counts x_ab y_ab for parts x, y that vary along `kind` ("const", "row", "column")."""
            if kind_x == "const" and kind_y == "const":
                return margins["weight"] * x * y
            if kind_x == "const":
                return x * margin_sum(y, kind_y)
            if kind_y == "const":
                return y * margin_sum(x, kind_x)
            if kind_x == kind_y:
                return margin_sum(x * y, kind_x)
            if kind_x == "row":
                return jnp.sum(x * times_counts(y), axis=1)
            return jnp.sum(y * times_counts(x), axis=1)

        kinds = ("const", "row", "column")
        hess = [[None] * len(self.free) for _ in self.free]
        for i, p in enumerate(self.free):
            for j in range(i, len(self.free)):
                q = self.free[j]
                entry = jnp.zeros(n_restarts)
                for kind_p, x in zip(kinds, derivative(p), strict=True):
                    for kind_q, y in zip(kinds, derivative(q), strict=True):
                        if x is not None and y is not None:
                            entry = entry + weighted_product(x, kind_p, y, kind_q)
                hess[i][j] = hess[j][i] = 2.0 * entry
        out["hess"] = jnp.stack([jnp.stack(row_, axis=-1) for row_ in hess], axis=-2)
        return out

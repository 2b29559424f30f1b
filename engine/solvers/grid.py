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
the gradient needs, are expanded into products `x @ counts` of the row parts: summed cell by cell
next to f, XLA on the CPU ran 6x slower; expanded, they cancel to ~1e-13 of their terms, far below
what the solvers' tolerances can see. Sums over cells and rows are taken by halving
(`linalg.halving_sum`), so a table padded further (merged into a group of larger tables) gives the
same sums to the bit.

Written for ONE task (its restarts as the leading axis of theta, so the products are matrix
products) and vmapped over the tasks.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .base import Evaluation
from .linalg import halving_sum, product_sum
from .problem import Grid


def _run_time_zero(grid: Grid) -> jax.Array:
    """A zero that neither XLA nor LLVM can fold (`within` is finite), for `halving_sum`."""
    return 0.0 * grid.within


def _margins(grid: Grid) -> dict[str, jax.Array]:
    """ONE task's table margins: row and column weights and weighted target sums ([n_rows],
    [n_columns]) and its total weight, halved as every table sum is (`GridEvaluator._one`)."""
    zero = _run_time_zero(grid)
    weighted = grid.counts * grid.mean
    return {
        "row_weight": halving_sum(grid.counts, (1,)),
        "column_weight": halving_sum(grid.counts, (0,)),
        "weight": halving_sum(grid.counts, (0, 1)),
        "row_target": halving_sum(weighted, (1,), zero),
        "column_target": halving_sum(weighted, (0,), zero),
    }


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

    law: the law; free: indices of fitted parameters; hessian: whether to form J^T J; width: when
    > 1, pool rows hold `width` restarts of one task and the driver steps them row by row
    (`grouped`, `lanes`): a row none of whose restarts is running costs nothing, so a pool's tail
    (a few restarts crawling on while the rest of the pool is done) costs its rows, not the pool.
    """

    law: object = eqx.field(static=True)
    free: tuple[int, ...] = eqx.field(static=True)
    hessian: bool = eqx.field(static=True, default=True)
    width: int = eqx.field(static=True, default=1)

    @property
    def grouped(self) -> bool:
        """Whether the driver steps lanes in groups (`Evaluator.grouped`): one pool row a group."""
        return self.width > 1

    @property
    def group_size(self) -> int:
        return self.width

    def layout(self, problems, n_restarts: int):
        """The tables' margins, once per solver call: row and column weights and weighted target
        sums (`[tasks, n_rows]`, `[tasks, n_columns]`) and total weight `[tasks]`."""
        return jax.vmap(_margins)(problems.grid)

    def __call__(self, theta, problems, points=None):
        """theta: [tasks, restarts, n_free]; problems: `Problem` with a `grid`, leading [tasks].

        Returns an `Evaluation` (as `Evaluator`).
        """
        if points is None:
            points = self.layout(problems, theta.shape[1])
        return jax.vmap(self._one)(theta, problems.theta_fixed, problems.grid, points)

    def lanes(self, theta, task, problems) -> Evaluation:
        """One pool row: theta [width, n_free], the restarts of task `task[0]` of `problems`."""
        theta_fixed, grid = jax.tree.map(lambda leaf: leaf[task[0]], (problems.theta_fixed, problems.grid))
        return self._one(theta, theta_fixed, grid, _margins(grid))

    def _one(self, theta, theta_fixed, grid: Grid, margins):
        n_restarts = theta.shape[0]
        full = jnp.broadcast_to(theta_fixed, (n_restarts, theta_fixed.shape[0]))
        full = full.at[:, jnp.asarray(self.free)].set(theta)
        (c0, d0), (row, d_row), (column, d_column) = _terms(self.law.separable, full, grid)
        level = c0[:, None] + row  # [restarts, n_rows]: prediction less the column term
        r = level[:, :, None] + column[:, None, :] - grid.mean[None]  # [restarts, n_rows, n_columns]
        # Sums over the table's cells and rows are halved (`halving_sum`, `product_sum`), not XLA
        # reductions or dot products, which round by the padded shape: a task's rows then do not
        # depend on the tables padded beside it. The dot products along the columns add the padded
        # columns' exact zeros last and measured the same to the bit at 1-4x the padding (tested).
        # `zero` keeps products out of fused multiply-adds (see `halving_sum`), as in the margins.
        zero = _run_time_zero(grid)
        f = halving_sum(grid.counts[None] * r * r, (1, 2), zero) + grid.within

        # The free parameters' derivatives along the rows and the columns ([restarts, n_rows] and
        # [restarts, n_columns]), each distinct array once (a term is often its own derivative).
        row_parts = _distinct([d_row[p] for p in self.free if p in d_row])
        column_parts = _distinct([d_column[p] for p in self.free if p in d_column])
        # x @ counts for the row term and each row part ([k, restarts, n_columns]): every sum that
        # pairs a row part with a column part is then a dot product along the columns.
        products = product_sum(jnp.stack([row, *row_parts])[..., None], grid.counts, -2, zero)
        # Sums of counts * r down each column and, less what pairs with the column term, along each
        # row (expanded, see the module docstring).
        column_sum = ((c0[:, None] + column) * margins["column_weight"] + zero) + products[0] - margins["column_target"]
        row_sum = (margins["row_weight"] * level + zero) - margins["row_target"]

        # Every other sum is a dot product of a left and a right array along the columns (or rows):
        # all of them as one batched product each, not one small reduction apiece.
        column_weight = jnp.broadcast_to(margins["column_weight"], column.shape)
        column_left = [column_sum, column_weight, *(margins["column_weight"] * x for x in column_parts), *products[1:]]
        column_right = [jnp.ones_like(column), column, *column_parts]
        along_columns = _pairwise(column_left, column_right)
        row_weight = jnp.broadcast_to(margins["row_weight"], row.shape)
        row_left = [row_sum, row_weight, *(margins["row_weight"] * x for x in row_parts)]
        row_right = [jnp.ones_like(row), *row_parts]
        along_rows = _pairwise(row_left, row_right, zero) if row_parts else None
        total = along_columns[:, 0, 0]

        def column_slot(x):  # index of a column part in column_parts
            return next(k for k, part in enumerate(column_parts) if part is x)

        def row_slot(x):
            return next(k for k, part in enumerate(row_parts) if part is x)

        def cross(x, y):  # sum_ab counts x_a y_b for a row part x and a column part y
            return along_columns[:, 2 + len(column_parts) + row_slot(x), 2 + column_slot(y)]

        grad = []
        for p in self.free:
            g = jnp.zeros(n_restarts)
            if p in d0:
                g = g + d0[p] * total
            if p in d_row:
                k = row_slot(d_row[p])
                g = g + along_rows[:, 0, 1 + k] + along_columns[:, 2 + len(column_parts) + k, 1]
            if p in d_column:
                g = g + along_columns[:, 0, 2 + column_slot(d_column[p])]
            grad.append(2.0 * g)
        grad = jnp.stack(grad, axis=-1)
        if not self.hessian:
            return Evaluation(f, grad)

        def weighted(p, q):  # 2 sum_ab counts J_ab[p] J_ab[q], from the dot tables
            entry = jnp.zeros(n_restarts)
            if p in d0 and q in d0:
                entry = entry + margins["weight"] * d0[p] * d0[q]
            for a, b in ((p, q), (q, p)):
                if a in d0 and b in d_row:
                    entry = entry + d0[a] * along_rows[:, 1, 1 + row_slot(d_row[b])]
                if a in d0 and b in d_column:
                    entry = entry + d0[a] * along_columns[:, 1, 2 + column_slot(d_column[b])]
                if a in d_row and b in d_column:
                    entry = entry + cross(d_row[a], d_column[b])
            if p in d_row and q in d_row:
                entry = entry + along_rows[:, 2 + row_slot(d_row[p]), 1 + row_slot(d_row[q])]
            if p in d_column and q in d_column:
                entry = entry + along_columns[:, 2 + column_slot(d_column[p]), 2 + column_slot(d_column[q])]
            return 2.0 * entry

        hess = [[None] * len(self.free) for _ in self.free]
        for i, p in enumerate(self.free):
            for j in range(i, len(self.free)):
                hess[i][j] = hess[j][i] = weighted(p, self.free[j])
        return Evaluation(f, grad, jnp.stack([jnp.stack(line, axis=-1) for line in hess], axis=-2))


def _pairwise(left, right, zero=None):
    """Every left array against every right one, summed along their last axis: lists of [restarts,
    n] arrays -> [restarts, len(left), len(right)]. Halved (`product_sum`) given `zero`, else one
    batched dot product."""
    left, right = jnp.stack(left, axis=1), jnp.stack(right, axis=1)  # [restarts, l, n], [restarts, r, n]
    if zero is None:
        return jnp.einsum("Rln,Rrn->Rlr", left, right)
    return product_sum(left[:, :, None, :], right[:, None, :, :], -1, zero)


def _distinct(arrays):
    """`arrays` without repeats of the same traced array (by identity)."""
    return list({id(x): x for x in arrays}.values())

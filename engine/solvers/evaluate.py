"""One pass over the points for a whole batch of lanes.

Solvers never see points: they see, per lane, the objective f = 0.5 ||s||^2, its gradient
g = J^T s and (for Gauss-Newton methods) the curvature model J^T W J (W: `objectives` curvature
weights; W = 1 makes it J^T J). Those come from a single `lax.scan` over the
points in which every step handles ONE point for ALL lanes at once, and accumulates the products.

Why not `vmap` a per-lane function and reduce over points? On CPU, XLA then emits one reduction
per entry of J^T J (21 for five parameters) and recomputes or re-reads the exp/log work for each
of them; here the per-point work is done once and stays in cache (4x faster on 2 CPU cores).

The law is still written for ONE point set: lanes play the role of points. For point k we pass
`theta: [n_params, lanes]` and `feats: [lanes, m]` (point k of each lane's task); laws are
elementwise in the points, so `law.predict(theta, feats) -> [lanes]`. Lanes stay one flat axis:
extra size-1 or 2-D lane axes made XLA on CPU run scalar code or copy the loop carry (5x slower).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..objectives import residual_and_slope
from ..types import Objective
from .base import Evaluation
from .linalg import UNROLL_MAX

# Long series are scanned in blocks of points: at most BLOCK_MAX points a step, at least
# BLOCK_MIN_STEPS steps (one point a step was fastest on short series).
BLOCK_MAX = 16
BLOCK_MIN_STEPS = 256
# Pools whose rows hold at least this many restarts of one task (`Tuning.shared_points`: series of
# more than 128 points) take the per-lane pass over all points (`Evaluator.stacked`), stepped in
# fixed groups of lanes (`loop.advance`): every group has the same shape in every pool, so a task
# rounds alike wherever it runs. Scanned, rows shared by a task's restarts rounded by the pool's
# row count (a task's rows differed between a job's 64-lane tail pool and its full one). Stacked,
# warm, 2-core CPU, 8 restarts a task: 600 tasks of 400 points 7.8 -> 6.1 s, 1,000 of 200 points
# 3.5 s either way; one restart a row (shorter series) beat both below ~128 points. A pool of one
# 64-restart task over 161-1080 points ran 2.5-4x faster stacked (ScaleBench). A wide row never
# narrows below `min_lanes` along its ladder (`batch.solve.pool_keys`). Groups skip when none of
# their lanes is running: STACKED_GROUP lanes a group, or one for laws of more than UNROLL_MAX
# parameters, whose lane pass is long enough alone and whose tails are single restarts crawling on
# (ScaleBench lr_bsz, 26-31 parameters over 2,702 points: three laws 41 -> 14 s warm with one lane
# a group; Epoch's 4500-start grid, 5 parameters over 245 points: 2.3 s warm in groups of 8, 2.9 s
# one lane a group).
STACKED_WIDTH = 2
STACKED_GROUP = 8


def lane_groups(lanes: int, size: int) -> np.ndarray:
    """The lanes 0..lanes-1 in groups of `size`: [groups, size]. A lane count that is not a multiple
    of the group repeats its last lane (its copies are dropped after)."""
    groups = -(-lanes // size)
    return np.minimum(np.arange(groups * size), lanes - 1).reshape(groups, size)


class Evaluator(eqx.Module):
    """Per-lane f, g (and J^T J) for a batch of tasks x restarts.

    law: the law; objective: the objective; free: indices of fitted parameters; stacked: each
    lane's pass over all its points at once (always for more than UNROLL_MAX free parameters).
    """

    law: object = eqx.field(static=True)
    objective: Objective = eqx.field(static=True)
    free: tuple[int, ...] = eqx.field(static=True)
    hessian: bool = eqx.field(static=True, default=True)
    stacked: bool = eqx.field(static=True, default=False)
    # unroll=1: with jax 0.10 on the 2-core CPU, unrolling the point scan 8x made an evaluation 4x slower.
    unroll: int = eqx.field(static=True, default=1)

    def _prediction_and_jacobian(self, theta_full, feats, batched: bool = False):
        """theta_full: tuple of n_params [lanes] rows; feats [lanes, m].
        Returns pred [lanes] and d pred / d theta_free as a list of [lanes] arrays.
        batched: one vmapped tangent pass for all parameters (else one traced pass each, up to
        UNROLL_MAX of them)."""
        log_space = self.objective.space == "log"
        analytic = self.law.log_predict_jac if log_space else self.law.predict_jac
        if analytic is not None:
            pred, jac = analytic(theta_full, feats)
            return pred, [jac[i] for i in self.free]
        fn = self.law.log_predict if log_space else self.law.predict
        pred, linear = jax.linearize(lambda th: fn(th, feats), theta_full)
        ones = jnp.ones_like(theta_full[0])
        if batched or len(self.free) > UNROLL_MAX:  # one tangent pass instead of a traced copy per parameter
            basis = jnp.eye(len(theta_full))[jnp.array(self.free)]
            jac = jax.vmap(lambda e: linear(tuple(e[j] * ones for j in range(len(theta_full)))))(basis)
            return pred, list(jac)
        zeros = [jnp.zeros_like(row) for row in theta_full]
        return pred, [linear(tuple(ones if j == i else zeros[j] for j in range(len(zeros)))) for i in self.free]

    def _block(self, n_pad: int) -> int:
        """Points per scan step: long series (learning curves of thousands of checkpoints) take a
        block of points so the elementwise loops stay long. A function of the padded length only,
        so that a lane's sums are added in the same order whatever the batch's size."""
        block = 1
        while block * 2 <= n_pad // BLOCK_MIN_STEPS and n_pad % (block * 2) == 0 and block < BLOCK_MAX:
            block *= 2
        return block

    def layout(self, problems, n_restarts: int):
        """The point data as the scan reads it, built once per solver call rather than per step:
        point-major, features feature-major (`[n_steps, m, tasks, block]`, target, coeff and
        sqrt(coeff) `[n_steps, tasks, block]`), so that each step reads contiguous rows. (Copying each task's
        points to its restarts up front was slower than repeating them inside the step.)"""
        n_tasks, n_pad = problems.target.shape
        block = self._block(n_pad)
        n_steps = n_pad // block
        m = problems.feats.shape[-1]
        return (
            jnp.transpose(problems.feats.reshape(n_tasks, n_steps, block, m), (1, 3, 0, 2)),
            jnp.moveaxis(problems.target.reshape(n_tasks, n_steps, block), 1, 0),
            jnp.moveaxis(problems.coeff.reshape(n_tasks, n_steps, block), 1, 0),
            jnp.moveaxis(jnp.sqrt(problems.coeff).reshape(n_tasks, n_steps, block), 1, 0),
        )

    def __call__(self, theta, problems, points=None):
        """theta: [tasks, restarts, n_free]; problems: `Problem` with leading [tasks]; points: its
        `layout` when already built.

        Returns an `Evaluation`: f [tasks, restarts], grad [tasks, restarts, n_free] and, with
        `hessian`, hess [tasks, restarts, n_free, n_free].
        """
        n_tasks, n_restarts, n_free = theta.shape
        if self.grouped:
            return self._stacked(theta, problems)
        if points is None:
            points = self.layout(problems, n_restarts)
        full = jnp.broadcast_to(problems.theta_fixed[:, None, :], (n_tasks, n_restarts, self.law.n_params))
        full = full.at[:, :, jnp.asarray(self.free)].set(theta)
        # One contiguous [lanes] row per parameter, sliced outside the loop (a transposed [n_params,
        # lanes] array sliced inside it became a strided read every step: 5x slower).
        flat = full.reshape(n_tasks * n_restarts, -1)
        theta_lanes = tuple(flat[:, i] for i in range(self.law.n_params))
        lanes = n_tasks * n_restarts
        block = points[1].shape[-1]
        # Point data per lane: with one task (or one restart) it broadcasts as is; otherwise each
        # task's point is repeated over its restarts.
        spread = n_tasks > 1 and n_restarts > 1

        def per_lane(x):
            return jnp.repeat(x, n_restarts, axis=0) if spread else x

        size = n_free + 1
        # Accumulate the upper triangle of [[J^T W J, g], [g^T, 2 f]] as separate [lanes] arrays: each update is
        # then one elementwise loop over the lanes that computes the point's exp/log/sqrt work once.
        # (Stacking the rows into one [size, lanes] array made XLA on CPU recompute that work for
        # every row: 5x slower.)
        pairs = (
            [(i, j) for i in range(size) for j in range(i, size)]
            if self.hessian
            else [(i, size - 1) for i in range(size)]
        )
        theta_rows = tuple(jnp.repeat(row, block) for row in theta_lanes) if block > 1 else theta_lanes

        def body(acc, point):
            feats, *values = point  # [m, tasks, block]; target, coeff, sqrt(coeff) [tasks, block]
            feats = jnp.stack([feats[j] for j in range(feats.shape[0])], axis=-1)
            if block > 1:  # flattened lanes x block: every lane needs its own copy of the block
                feats = jnp.repeat(feats, n_restarts, axis=0).reshape(lanes * block, -1)
                values = [jnp.repeat(x, n_restarts, axis=0).reshape(-1) for x in values]
            else:
                feats, values = per_lane(feats[:, 0]), [per_lane(x[:, 0]) for x in values]
            target, coeff, root = values
            pred, jac = self._prediction_and_jacobian(theta_rows, feats)
            if self.hessian:
                s, slope, weight = residual_and_slope(self.objective, target, pred, coeff, curvature=True, root=root)
                weighted = [weight * d for d in jac]
            else:
                s, slope = residual_and_slope(self.objective, target, pred, coeff, root=root)
            grad_rows = [(slope * s) * d for d in jac]
            # (i, last): gradient; (last, last): 2 f; (i, j): the Gauss-Newton curvature model.
            products = [
                s * s if i == size - 1 else grad_rows[i] if j == size - 1 else weighted[i] * jac[j] for i, j in pairs
            ]
            if block > 1:
                products = [p.reshape(lanes, block).sum(axis=1) for p in products]
            return tuple(total + p for total, p in zip(acc, products, strict=True)), None

        acc0 = tuple(jnp.zeros(lanes) for _ in pairs)
        sums, _ = jax.lax.scan(body, acc0, points, unroll=self.unroll if block == 1 else 1)
        matrix = [[None] * size for _ in range(size)]
        for total, (i, j) in zip(sums, pairs, strict=True):
            matrix[i][j] = matrix[j][i] = total.reshape(n_tasks, n_restarts)
        f = 0.5 * matrix[-1][-1]
        grad = jnp.stack([matrix[i][-1] for i in range(n_free)], axis=-1)
        if not self.hessian:
            return Evaluation(f, grad)
        hess = jnp.stack([jnp.stack([matrix[i][j] for j in range(n_free)], axis=-1) for i in range(n_free)], axis=-2)
        return Evaluation(f, grad, hess)

    @property
    def grouped(self) -> bool:
        """Whether lanes are evaluated each over all its points, in fixed groups of `group_size`
        (`lanes`), rather than all lanes together one point at a time (the scan)."""
        return len(self.free) > UNROLL_MAX or self.stacked

    @property
    def group_size(self) -> int:
        """Lanes a group (`lane_groups`): one for many-parameter laws, else STACKED_GROUP."""
        return 1 if len(self.free) > UNROLL_MAX else STACKED_GROUP

    def lanes(self, theta, task, problems) -> Evaluation:
        """The stacked pass for one group of lanes: theta [group, n_free], task [group] (each lane's
        task in `problems`). Each lane's J is one [n_free, n_points] array, g = J s', J^T W J one
        matrix product (the scan's per-entry accumulation has n_free^2 / 2 arrays per point: slow to
        compile and to run for many parameters)."""

        def lane(theta, task):
            full = problems.theta_fixed[task].at[jnp.asarray(self.free)].set(theta)
            feats, target, coeff = problems.feats[task], problems.target[task], problems.coeff[task]
            pred, jac = self._prediction_and_jacobian(tuple(full[i] for i in range(full.shape[0])), feats, True)
            jac = jnp.stack(jac)  # [n_free, n_points]
            if self.hessian:
                s, slope, weight = residual_and_slope(self.objective, target, pred, coeff, curvature=True)
            else:
                s, slope = residual_and_slope(self.objective, target, pred, coeff)
            grad = jac @ (slope * s)
            f = 0.5 * jnp.sum(s * s)
            if not self.hessian:
                return Evaluation(f, grad)
            return Evaluation(f, grad, (jac * weight) @ jac.T)

        return jax.vmap(lane)(theta, task)

    def _stacked(self, theta, problems) -> Evaluation:
        """`lanes` over a whole batch, group by group (a loop over the groups): every product then has
        the same shape in any pool, so a lane's sums round the same way wherever it runs (vmapped over
        a whole pool, XLA's batched products blocked, and rounded, by the pool's size)."""
        n_tasks, n_restarts, n_free = theta.shape
        lanes = n_tasks * n_restarts
        index = lane_groups(lanes, self.group_size)
        flat = theta.reshape(lanes, n_free)
        out = jax.lax.map(lambda group: self.lanes(flat[group], group // n_restarts, problems), index)
        shape = (n_tasks, n_restarts)
        return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:lanes].reshape(shape + x.shape[2:]), out)

"""One pass over the points for a whole batch of lanes.

Solvers never see points: they see, per lane, the objective f = 0.5 ||s||^2, its gradient
g = J^T s and (for Gauss-Newton methods) the curvature model J^T W J (W: `objectives` curvature
weights; W = 1 makes it J^T J). The law is written for ONE point set; a lane's pass calls it on
its task's points and sums every product it needs over them in ONE variadic reduction
(`jax.lax.reduce` over a tuple of [n_points] arrays), vmapped over tasks and restarts.

Why one variadic reduction: XLA on the CPU then emits a single loop over a lane's points that
computes the point's exp/log work once and adds it into all the sums (21 for five parameters),
in point order. Separate reductions (or `jnp.sum` of each product) became one loop per entry of
J^T J that recomputed or re-read that work; a scan over the points, one point for all lanes a
step, emitted ~25 small kernels a point. Warm, one CPU core, Chinchilla's 24 points: 0.73 us a
lane against 1.09 us for the point scan, with the same sums to the last bit (both add in point
order). Adding in point order also makes a lane's sums independent of how many lanes run beside
it and of how far its task is padded (padding adds exact zeros).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..objectives import residual_and_slope
from ..types import Objective
from .base import Evaluation
from .linalg import UNROLL_MAX, dot, point_sum

# Pools whose rows hold at least this many restarts of one task (raced series of more than
# `Tuning.shared_points` points, whose restarts must reach each checkpoint side by side) take the
# per-lane pass over all points with matrix products (`Evaluator.stacked`), stepped in fixed groups
# of lanes (`loop.advance`): every group has the same shape in every pool, so a task rounds alike
# wherever it runs. A pool of one 64-restart task over 161-1080 points ran 2.5-4x faster stacked
# than the former point scan (ScaleBench). A wide row never narrows below `min_lanes` along its
# ladder (`batch.solve.pool_keys`). Groups skip when none of their lanes is running:
# STACKED_GROUP lanes a group, or one for laws of more than UNROLL_MAX parameters, whose lane pass
# is long enough alone and whose tails are single restarts crawling on (ScaleBench lr_bsz, 26-31
# parameters over 2,702 points: three laws 41 -> 14 s warm with one lane a group).
STACKED_WIDTH = 2
STACKED_GROUP = 8
# The stacked pass sums its matrix products STACKED_CHUNK points at a time, in point order, so a
# lane's sums do not depend on how far its task is padded: long series take few scan steps, and a
# series shorter than a chunk computes at most 63 padded zeros (ScaleBench warm 65.2 -> 67.0 s).
STACKED_CHUNK = 64


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

    def _prediction_and_jacobian(self, theta_full, feats, batched: bool = False):
        """ONE lane: theta_full a tuple of n_params values; feats [n_points, m].
        Returns pred [n_points] and d pred / d theta_free as a list of [n_points] arrays.
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

    def layout(self, problems, n_restarts: int):
        """sqrt(coeff) [tasks, n_points], computed once per solver call rather than per step."""
        return jnp.sqrt(problems.coeff)

    def __call__(self, theta, problems, points=None):
        """theta: [tasks, restarts, n_free]; problems: `Problem` with leading [tasks]; points: its
        `layout` when already built.

        Returns an `Evaluation`: f [tasks, restarts], grad [tasks, restarts, n_free] and, with
        `hessian`, hess [tasks, restarts, n_free, n_free].
        """
        if self.grouped:
            return self._stacked(theta, problems)
        root = self.layout(problems, theta.shape[1]) if points is None else points
        # The restarts of a task share its points (broadcast, not copied).
        per_restart = jax.vmap(self._sums, in_axes=(0, None, None, None, None, None))
        sums = jax.vmap(per_restart)(theta, problems.theta_fixed, problems.feats, problems.target, problems.coeff, root)
        return self._assemble(sums)

    def _pairs(self) -> list[tuple[int, int]]:
        """The entries (i, j) of the upper triangle of [[J^T W J, g], [g^T, 2 f]] summed (only the
        last column without the curvature)."""
        size = len(self.free) + 1
        if self.hessian:
            return [(i, j) for i in range(size) for j in range(i, size)]
        return [(i, size - 1) for i in range(size)]

    def _sums(self, theta, theta_fixed, feats, target, coeff, root):
        """ONE lane: theta [n_free] on its task's points (feats [n_points, m], target, coeff and
        sqrt(coeff) [n_points]) -> a tuple of sums over the points, one per `_pairs` entry."""
        n_params = self.law.n_params
        full = theta if self.free == tuple(range(n_params)) else theta_fixed.at[jnp.asarray(self.free)].set(theta)
        pred, jac = self._prediction_and_jacobian(tuple(full[i] for i in range(n_params)), feats)
        size = len(self.free) + 1
        if self.hessian:
            s, slope, weight = residual_and_slope(self.objective, target, pred, coeff, curvature=True, root=root)
            weighted = [weight * d for d in jac]
        else:
            s, slope = residual_and_slope(self.objective, target, pred, coeff, root=root)
        grad_rows = [(slope * s) * d for d in jac]
        # (i, last): gradient; (last, last): 2 f; (i, j): the Gauss-Newton curvature model.
        products = tuple(
            s * s if i == size - 1 else grad_rows[i] if j == size - 1 else weighted[i] * jac[j]
            for i, j in self._pairs()
        )
        zeros = tuple(jnp.zeros((), p.dtype) for p in products)
        return jax.lax.reduce(products, zeros, lambda a, b: tuple(x + y for x, y in zip(a, b, strict=True)), (0,))

    def _assemble(self, sums) -> Evaluation:
        """The `Evaluation` from `_sums`' tuple (each [tasks, restarts])."""
        size = len(self.free) + 1
        matrix = [[None] * size for _ in range(size)]
        for total, (i, j) in zip(sums, self._pairs(), strict=True):
            matrix[i][j] = matrix[j][i] = total
        f = 0.5 * matrix[-1][-1]
        grad = jnp.stack([matrix[i][-1] for i in range(size - 1)], axis=-1)
        if not self.hessian:
            return Evaluation(f, grad)
        rows = [jnp.stack([matrix[i][j] for j in range(size - 1)], axis=-1) for i in range(size - 1)]
        return Evaluation(f, grad, jnp.stack(rows, axis=-2))

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
            s, slope, *weight = residual_and_slope(self.objective, target, pred, coeff, curvature=self.hessian)

            def sums(j, g, r, *w):  # one chunk's J s', s^T s and, given the weights w, J^T W J
                out = (j @ g, dot(r, r))
                return out + ((j * w[0]) @ j.T,) if w else out

            # Summed STACKED_CHUNK points at a time, in point order: the same however far the task
            # is padded (one product over all the points rounded by the padded length).
            grad, total, *hess = point_sum(sums, jac, slope * s, s, *weight, chunk=STACKED_CHUNK)
            return Evaluation(0.5 * total, grad, *hess)

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

"""One task's data on the device and the residual function of its free parameters."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..objectives import point_residuals
from ..types import Objective


class Grid(eqx.Module):
    """One task's points as a table of distinct inputs (padded), for `grid.GridEvaluator`. Batched: a
    leading [tasks] axis on every field.

    rows: [n_rows] the first feature at each distinct value of the first input; columns: [n_columns]
    the second feature likewise; counts: [n_rows, n_columns] summed point weights per cell (0 for
    padding and empty cells); mean: [n_rows, n_columns] their weighted mean target; within: [] the
    weighted squared spread of the targets about their cells' means.
    """

    rows: jax.Array
    columns: jax.Array
    counts: jax.Array
    mean: jax.Array
    within: jax.Array


class Problem(eqx.Module):
    """One task (padded). Batched problems carry a leading [tasks] axis on every field.

    feats: [n_points, m] law features; target: [n_points] (log y in the log space);
    coeff: [n_points] point weights (0 on padding); theta_fixed: [n_params] values of fixed params;
    grid: the same points as a table of distinct inputs, for separable laws (else None).
    """

    feats: jax.Array
    target: jax.Array
    coeff: jax.Array
    theta_fixed: jax.Array
    grid: Grid | None = None


class Residuals(eqx.Module):
    """s(theta_free; problem) for a law and objective, with some parameters held fixed.

    `free` lists the indices of the fitted parameters; bounds are those of the free ones.
    """

    law: object = eqx.field(static=True)
    objective: Objective = eqx.field(static=True)
    free: tuple[int, ...] = eqx.field(static=True)

    @property
    def lower(self) -> np.ndarray:
        return np.asarray(self.law.lower, dtype=np.float64)[list(self.free)]

    @property
    def upper(self) -> np.ndarray:
        return np.asarray(self.law.upper, dtype=np.float64)[list(self.free)]

    @property
    def bounded(self) -> bool:
        return bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any())

    def full(self, theta, problem: Problem):
        if len(self.free) == self.law.n_params:
            return theta
        return problem.theta_fixed.at[jnp.asarray(self.free)].set(theta)

    def __call__(self, theta, problem: Problem):
        """[n_free] -> s [n_points]."""
        return point_residuals(
            self.law, self.objective, self.full(theta, problem), problem.feats, problem.target, problem.coeff
        )

    def value(self, theta, problem: Problem):
        s = self(theta, problem)
        return 0.5 * jnp.sum(s * s)

    def value_and_jacobian(self, theta, problem: Problem):
        """(s [n_points], J [n_points, n_free]) in one forward-mode pass."""
        jac, s = jax.jacfwd(lambda th: (self(th, problem),) * 2, has_aux=True)(theta)
        return s, jac

"""Variable-projection initialisation.

For laws whose prediction is linear in some coefficients once the others are fixed
(`law.varpro`: y = basis(theta_nl) @ coef), scan a grid of the nonlinear parameters, solve the
linear coefficients in closed form at each grid point (non-negative where required, by trying
every active set: there are at most a handful of coefficients), evaluate the true objective there,
and hand the best few points to the nonlinear solver.

The scan minimises a weighted least-squares surrogate of the objective: raw residuals for the raw
space, and residuals relative to y (weights 1/y^2) for the log space, since log y - log yhat
~ (y - yhat)/y near a good fit.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from ..objectives import objective_value


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
        coef = jnp.where(mask, jnp.linalg.solve(g, jnp.where(mask, rhs, 0.0)), 0.0)
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
    y_wy = jnp.sum(weights * y * y)

    def scan_point(theta_nl):
        basis = spec.basis(theta_nl, problem.feats)  # [n_points, k]
        weighted = basis * weights[:, None]
        coef, ssr = _solve_linear(weighted.T @ basis, weighted.T @ y, y_wy, spec.nonneg)
        if spec.nonneg:
            # Zero coefficients cannot be logged: start them tiny instead.
            coef = jnp.maximum(coef, 1e-10 * jnp.max(jnp.abs(coef)) + 1e-300)
        theta = spec.assemble(theta_nl, coef)
        # Rank by the true objective, not the least-squares surrogate: with a robust loss the two
        # can prefer different basins.
        value = objective_value(law, objective, theta, problem.feats, problem.target, problem.coeff)
        ok = jnp.isfinite(value) & jnp.isfinite(ssr)
        return theta, jnp.where(ok, value, jnp.inf), jnp.where(ok, ssr, jnp.inf)

    thetas, values, ssrs = jax.lax.map(scan_point, grid, batch_size=batch_size)
    # Half the starts are the best grid points by the true objective; the other half come from the
    # best points by the least-squares surrogate (re-ranked by the true objective), which often lie in
    # other basins: ranking by one criterion alone put every start in the same basin more often.
    n_starts = min(n_starts, grid.shape[0])
    n_by_value = (n_starts + 1) // 2
    _, by_value = jax.lax.top_k(-values, n_by_value)
    _, by_ssr = jax.lax.top_k(-ssrs, min(n_candidates, grid.shape[0]))
    _, rerank = jax.lax.top_k(-values[by_ssr], n_starts - n_by_value)
    order = jnp.concatenate([by_value, by_ssr[rerank]])
    return thetas[order], values[order]

"""Result rows: one per task, from its restarts' outcomes, with the status diagnosis (bounds hit,
parameters the data do not determine) and the provenance of the fit."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from lawfit import kernels

from ..types import Objective, Status, status_label

# log10 condition number of the column-scaled J^T J beyond which a converged fit is reported ill-conditioned:
# a parameter combination then moves the residuals by less than ~1e-7 of what the others do.
UNDETERMINED_LOG10_COND = 14.0
# A parameter whose unit change moves every prediction by less than this (relative) is not determined by
# the data: its term has vanished over the data range (a coefficient ~0, an exponent so large or a
# coefficient so small that the term is nil), so it could take any value. Column scaling hides this.
UNDETERMINED_SENSITIVITY = 1e-6


def provenance(task, solver: str) -> dict[str, Any]:
    from lawfit import __version__

    return {
        "solver": solver,
        "objective_spec": task.objective.describe() if isinstance(task.objective, Objective) else str(task.objective),
        "init": task.init if isinstance(task.init, str) else ("random" if isinstance(task.init, int) else "explicit"),
        "seed": task.seed,
        "data_hash": task.data_hash(),
        "lawfit_version": __version__,
        "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
        "device": jax.devices()[0].platform,
    }


def failed(task, status: Status, message: str, solver: str) -> dict[str, Any]:
    """The row of a task that was not solved (invalid input, too few points)."""
    law = kernels.get(task.law)
    row: dict[str, Any] = {str(k): v for k, v in task.labels.items()}
    row |= {"task_hash": task.key(), "law": law.name, "n_points": int(np.asarray(task.target).size)}
    row |= {
        "objective": None,
        "status": status.label,
        "status_code": int(status),
        "iterations": 0,
        "evaluations": 0,
        "best_restart": None,
        "n_restarts": 0,
        "n_at_best": 0,
        "log10_cond": None,
        "message": message,
        "params": None,
    }
    return row | provenance(task, solver)


def solved(
    item,
    theta: np.ndarray,
    objective: np.ndarray,
    status: np.ndarray,
    iterations: np.ndarray,
    evaluations: np.ndarray,
    log10_cond: float,
    sensitivity: np.ndarray,
    *,
    solver: str,
    at_best_rtol: float,
    keep_restarts: bool,
) -> dict[str, Any]:
    """The row of a solved task (`plan.Prepared`): theta [restarts, n_free], objective, status,
    iterations, evaluations [restarts]; log10_cond and sensitivity [n_free] at the best restart."""
    task = item.task
    law = item.law
    row: dict[str, Any] = {str(k): v for k, v in task.labels.items()}
    row |= {"task_hash": task.key(), "law": law.name, "n_points": int(item.n_points)}
    objective = np.where(np.isfinite(objective), objective, np.inf)
    best = int(np.argmin(objective))
    best_value = float(objective[best])
    full = np.array(item.theta_fixed, dtype=np.float64)
    full[list(item.free)] = theta[best]
    code = Status(int(status[best]))
    message = None
    if not np.isfinite(best_value):
        code = Status.NON_FINITE
    elif code == Status.CONVERGED:
        free_theta = theta[best]
        lower = np.asarray(law.lower)[list(item.free)]
        upper = np.asarray(law.upper)[list(item.free)]
        tol = 1e-9 * (1 + np.abs(free_theta))
        loose = [law.param_names[item.free[j]] for j in np.flatnonzero(sensitivity < UNDETERMINED_SENSITIVITY)]
        if np.any(np.abs(free_theta - lower) <= tol) or np.any(np.abs(free_theta - upper) <= tol):
            code = Status.BOUND_HIT
        elif loose or not log10_cond < UNDETERMINED_LOG10_COND:
            # The optimum is flat along some direction: the data do not determine every parameter, so the
            # numbers are not to be trusted (and a better optimum may lie elsewhere).
            code = Status.ILL_CONDITIONED
            message = (
                f"not determined by the data: {', '.join(loose)} (a unit change moves the fit by "
                f"< {UNDETERMINED_SENSITIVITY:g})"
                if loose
                else f"ill-conditioned optimum (log10 cond {log10_cond:.1f})"
            )
    n_at_best = int(np.sum(objective <= best_value * (1 + at_best_rtol) + 1e-300)) if np.isfinite(best_value) else 0
    row |= law.natural(full) if np.isfinite(best_value) else {}
    row |= {
        "objective": best_value if np.isfinite(best_value) else None,
        "status": code.label,
        "status_code": int(code),
        "iterations": int(iterations[best]),
        "evaluations": int(evaluations.sum()),
        "best_restart": best,
        "n_restarts": int(objective.size),
        "n_at_best": n_at_best,
        "log10_cond": float(log10_cond) if np.isfinite(log10_cond) else None,
        "message": message,
        "params": full.tolist(),
    }
    if keep_restarts:
        row |= {
            "restart_objective": [float(v) if np.isfinite(v) else None for v in objective],
            "restart_status": [status_label(c) for c in status],
            "restart_iterations": iterations.astype(int).tolist(),
            "restart_params": theta.tolist(),
        }
    return row | provenance(task, solver)

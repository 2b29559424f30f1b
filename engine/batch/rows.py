"""Result rows: one per task, from its restarts' outcomes, with the status diagnosis (bounds hit,
parameters the data do not determine) and the provenance of the fit."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import polars as pl

from lawfit import kernels

from ..types import Objective, Status, status_labels

# log10 condition number of the column-scaled J^T J beyond which a converged fit is reported ill-conditioned:
# a parameter combination then moves the residuals by less than ~1e-7 of what the others do.
UNDETERMINED_LOG10_COND = 14.0
# A parameter whose unit change moves every prediction by less than this (relative) is not determined by
# the data: its term has vanished over the data range (a coefficient ~0, an exponent so large or a
# coefficient so small that the term is nil), so it could take any value. Column scaling hides this.
UNDETERMINED_SENSITIVITY = 1e-6
# A parameter with at least this share of J^T J's near-null space is named as undetermined.
UNDETERMINED_NULL_SHARE = 0.05
# Restarts within `at_best_rtol` of the best objective whose fit-space parameters differ from the best
# by more than this (|d theta| / (1 + |theta|)) make the optimum non-unique.
NON_UNIQUE_SPREAD = 0.05


def conditioning(scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From `programs.check`'s scaled J^T J [n_tasks, n_free, n_free]: (log10 condition number [n_tasks] (nan
    where J^T J is not finite), each free parameter's share of the eigenvectors whose eigenvalue is
    below 10^-UNDETERMINED_LOG10_COND of the largest [n_tasks, n_free]: the directions the data do
    not constrain).

    On the host, in numpy: `jnp.linalg.eigh` on the CPU calls LAPACK, whose registration imports
    scipy.linalg (~0.12 s of every fresh process), and numpy's batched call takes ~2.5 us a 5x5."""
    finite = np.isfinite(scaled).all(axis=(1, 2))
    eig, vectors = np.linalg.eigh(np.where(finite[:, None, None], scaled, np.eye(scaled.shape[-1])))
    top = np.maximum(eig[:, -1], 1e-300)
    log10_cond = np.where(finite, np.log10(top / np.maximum(eig[:, 0], 1e-300)), np.nan)
    weak = eig <= top[:, None] * 10.0 ** (-UNDETERMINED_LOG10_COND)
    null_share = np.sum(np.where(weak[:, None, :], vectors**2, 0.0), axis=2)
    return log10_cond, np.where(finite[:, None], null_share, 0.0)


def provenance(task, solver: str) -> dict[str, Any]:
    return {
        "solver": solver,
        "objective_spec": task.objective.describe() if isinstance(task.objective, Objective) else str(task.objective),
        "init": init_label(task.init),
        "seed": task.seed,
        "data_hash": task.data_hash(),
        "lawfit_version": _version(),
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


def init_label(init) -> str:
    return init if isinstance(init, str) else ("random" if isinstance(init, int | np.integer) else "explicit")


def solved(grp, outcome, *, solver: str, at_best_rtol: float, keep_restarts: bool) -> pl.DataFrame:
    """The rows of a solved group (`plan.Group`, `solve.Outcome`), built column by column; column
    `_index` holds each task's position in its chunk."""
    members, law, free = grp.members, grp.law, list(grp.free)
    res = outcome.results
    n = len(members)
    at = np.arange(n)
    objective = np.where(np.isfinite(res.objective), res.objective, np.inf)  # [n, restarts]
    best = np.argmin(objective, axis=1)
    best_value = objective[at, best]
    finite = np.isfinite(best_value)
    best_theta = res.theta[at, best]  # [n, n_free]
    full = np.stack([item.theta_fixed for item in members]).astype(np.float64)
    full[:, free] = best_theta
    code = res.status[at, best].astype(np.int64)
    code = np.where(finite, code, int(Status.NON_FINITE))
    converged = code == Status.CONVERGED
    lower, upper = np.asarray(law.lower)[free], np.asarray(law.upper)[free]
    tol = 1e-9 * (1 + np.abs(best_theta))
    at_bound = ((np.abs(best_theta - lower) <= tol) | (np.abs(best_theta - upper) <= tol)).any(axis=1)
    loose = outcome.sensitivity < UNDETERMINED_SENSITIVITY  # [n, n_free]
    flat = loose.any(axis=1) | ~(outcome.log10_cond < UNDETERMINED_LOG10_COND)
    code = np.where(converged & at_bound, int(Status.BOUND_HIT), code)
    # The optimum is flat along some direction: the data do not determine every parameter, so the
    # numbers are not to be trusted (and a better optimum may lie elsewhere).
    ill = converged & ~at_bound & flat
    code = np.where(ill, int(Status.ILL_CONDITIONED), code)
    natural = law.natural_names  # natural[i] is what fit-space parameter i encodes
    messages: list[str | None] = [None] * n
    for k in np.flatnonzero(ill):
        null = (outcome.null_share[k] >= UNDETERMINED_NULL_SHARE) & ~(outcome.log10_cond[k] < UNDETERMINED_LOG10_COND)
        names = [natural[free[j]] for j in np.flatnonzero(loose[k] | null)]
        messages[k] = (
            f"not determined by the data: {', '.join(names)} (log10 cond of J^T J "
            f"{outcome.log10_cond[k]:.1f}; these span its near-null space or move the fit by < "
            f"{UNDETERMINED_SENSITIVITY:g})"
            if names
            else f"ill-conditioned optimum (log10 cond {outcome.log10_cond[k]:.1f})"
        )
    threshold = best_value * (1 + at_best_rtol) + 1e-300
    at_best = (objective <= threshold[:, None]) & finite[:, None]  # [n, restarts]
    n_at_best = at_best.sum(axis=1)
    # Restarts as good as the best but elsewhere: the data do not pick one optimum.
    spread = np.abs(res.theta - best_theta[:, None, :]) / (1 + np.abs(best_theta[:, None, :]))
    spread = np.where(at_best[..., None], spread, 0.0).max(axis=1)  # [n, n_free]
    apart = (spread > NON_UNIQUE_SPREAD) & (code == Status.CONVERGED)[:, None]
    code = np.where(apart.any(axis=1), int(Status.NON_UNIQUE), code)
    for k in np.flatnonzero(apart.any(axis=1)):
        picked = np.flatnonzero(at_best[k])
        thetas = np.repeat(full[k][None], picked.size, axis=0)
        thetas[:, free] = res.theta[k, picked]
        values = law.natural_columns(thetas)
        named = [natural[free[j]] for j in np.flatnonzero(apart[k])]
        ranges = ", ".join(f"{name} {np.min(values[name]):.4g}..{np.max(values[name]):.4g}" for name in named)
        messages[k] = (
            f"non-unique optimum: {picked.size} restarts within {at_best_rtol:g} of the best objective "
            f"disagree: {ranges}"
        )
    tasks = [item.task for item in members]
    columns: dict[str, Any] = {"_index": np.array([item.index for item in members], np.int64)}
    label_names = list(dict.fromkeys(str(k) for task in tasks for k in task.labels))
    for name in label_names:
        columns[name] = [task.labels.get(name) for task in tasks]
    columns |= {
        "task_hash": [task.key() for task in tasks],
        "law": [law.name] * n,
        "n_points": np.array([item.n_points for item in members], np.int64),
    }
    for name, values in law.natural_columns(full).items():
        columns[name] = np.where(finite, values, np.nan)
    log10_cond = np.asarray(outcome.log10_cond, dtype=np.float64)
    columns |= {
        "objective": np.where(finite, best_value, np.nan),
        "status": status_labels(code),
        "status_code": code,
        "iterations": res.iterations[at, best].astype(np.int64),
        "evaluations": res.evaluations.sum(axis=1).astype(np.int64),
        "best_restart": best.astype(np.int64),
        "n_restarts": np.full(n, objective.shape[1], np.int64),
        "n_at_best": n_at_best.astype(np.int64),
        "log10_cond": np.where(np.isfinite(log10_cond), log10_cond, np.nan),
        "message": pl.Series(messages, dtype=pl.String),
        "params": full,
    }
    if keep_restarts:
        # From the arrays, not Python lists: 4500 restarts' lists took 0.1 s of the Chinchilla grid.
        finite_only = pl.when(pl.element().is_finite()).then(pl.element())
        columns |= {
            "restart_objective": pl.Series(objective).cast(pl.List(pl.Float64)).list.eval(finite_only),
            "restart_status": [status_labels(row) for row in res.status],
            "restart_iterations": pl.Series(res.iterations.astype(np.int64)).cast(pl.List(pl.Int64)),
            "restart_params": pl.Series(res.theta).cast(pl.List(pl.List(pl.Float64))),
        }
    columns |= {
        "solver": [solver] * n,
        "objective_spec": [grp.objective.describe()] * n,
        "init": [init_label(task.init) for task in tasks],
        "seed": [task.seed for task in tasks],
        "data_hash": [task.data_hash() for task in tasks],
        "lawfit_version": [_version()] * n,
        "dtype": ["float64" if jax.config.jax_enable_x64 else "float32"] * n,
        "device": [jax.devices()[0].platform] * n,
    }
    frame = pl.DataFrame({k: v for k, v in columns.items() if k != "params"})
    frame = frame.with_columns(pl.Series("params", full).cast(pl.List(pl.Float64)))
    # NaN marks a missing number inside the engine; rows carry nulls, as the per-task rows did.
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    return frame.with_columns([pl.col(c).fill_nan(None) for c in floats])


def _version() -> str:
    from lawfit import __version__

    return __version__

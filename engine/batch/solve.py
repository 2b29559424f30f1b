"""One group of tasks from packed arrays to per-task outcomes: starts (given, screened or from the
variable-projection scan), the lane pool, and the conditioning check at each task's best point.
Every program it runs is declared by its group's shapes and the tuning's ladders."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..plan import Group, TaskBatch, pack, pack_starts
from . import pool, programs
from .tuning import Tuning, fitting, ladder, power_of_two_at_most


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A group's solve, per task (numpy): the pool's `Results` and, at each task's best restart,
    log10 of the condition number of the column-scaled J^T J [tasks] and each free parameter's
    sensitivity [tasks, n_free]."""

    results: pool.Results
    log10_cond: np.ndarray
    sensitivity: np.ndarray


def fit_of(grp: Group) -> programs.Fit:
    return programs.Fit(grp.law, grp.objective, grp.free, grp.n_pad, grp.grid)


def pool_keys(grp: Group, solver: str, options, tuning: Tuning) -> list[programs.PoolKey]:
    """The ladder of pool shapes for `grp`, largest first. Short point series: one restart a row, so
    every lane takes any task's restart. Longer ones and table sums: a row holds one task, whose
    restarts share its data; a single task with many starts is one wide row that narrows in the tail."""
    fit = fit_of(grp)
    if grp.grid is None:
        lanes = min(tuning.pool_lanes, tuning.lane_points // grp.n_pad)
    else:
        lanes = min(tuning.pool_lanes, tuning.lane_cells // (grp.grid[0] * grp.grid[1]))
    lanes = max(power_of_two_at_most(lanes), tuning.min_lanes)
    shared = grp.grid is not None or grp.n_pad > tuning.shared_points
    width = min(power_of_two_at_most(grp.n_restarts), lanes) if shared else 1
    rows = max(lanes // width, 1)
    if rows == 1:
        shapes = [(1, w) for w in ladder(width, tuning)]
    else:
        shapes = [(r, width) for r in ladder(rows, tuning, minimum=1 if width > 1 else tuning.min_lanes)]
    return [programs.PoolKey(fit, solver, options, r, w) for r, w in shapes]


def _batched(n_tasks: int, per_task: int, tuning: Tuning) -> tuple[int, ...]:
    """Batch sizes of a per-task program (starts, checks) whose tasks cost `per_task` lane-points."""
    largest = power_of_two_at_most(max(tuning.batch_points // max(per_task, 1), 1))
    return ladder(min(largest, tuning.pool_lanes), tuning, minimum=1)


def _in_batches(sizes: tuple[int, ...], n_tasks: int):
    """(first, last, batch size) covering n_tasks: full batches of the largest size, then the
    smallest size that holds the rest (padded by repeating the last task)."""
    first = 0
    while first < n_tasks:
        size = fitting(sizes, n_tasks - first)
        yield first, min(first + size, n_tasks), size
        first += size


def _padded(batch: TaskBatch, first: int, last: int, size: int) -> TaskBatch:
    index = np.minimum(np.arange(first, first + size), last - 1)
    return batch.take(index)


def solve(grp: Group, solver: str, options, tuning: Tuning, max_steps: int, device=None, progress=None) -> Outcome:
    """Solve `grp`'s tasks; `progress(n)` is called as n more tasks finish."""
    members = grp.members
    batch = pack(grp, members)
    fit = fit_of(grp)
    n_tasks = len(members)
    if grp.init_kind == "starts":
        starts = pack_starts(grp, members)
    else:
        grid = pack_starts(grp, members) if grp.init_kind == "screen" else None
        n_grid = grid.shape[1] if grid is not None else 0
        per_task = grp.n_pad * max(n_grid, 64)
        parts = []
        for first, last, size in _in_batches(_batched(n_tasks, per_task, tuning), n_tasks):
            key = programs.StartKey(fit, grp.init_kind, size, grp.n_restarts, n_grid)
            args = (_padded(batch, first, last, size),)
            if grid is not None:
                args += (grid[np.minimum(np.arange(first, first + size), last - 1)],)
            parts.append(np.asarray(programs.starts(key)(*args))[: last - first])
        starts = np.concatenate(parts)
    results = pool.run(pool_keys(grp, solver, options, tuning), batch, starts, tuning, max_steps, device, progress)
    ranked = np.where(np.isfinite(results.objective), results.objective, np.inf)
    best = results.theta[np.arange(n_tasks), np.argmin(ranked, axis=1)]
    points = batch.points_only()
    conds, sens = [], []
    check_fit = dataclasses.replace(fit, table=None)
    for first, last, size in _in_batches(_batched(n_tasks, grp.n_pad, tuning), n_tasks):
        index = np.minimum(np.arange(first, first + size), last - 1)
        cond, sensitivity = programs.check(programs.CheckKey(check_fit, size))(points.take(index), best[index])
        conds.append(np.asarray(cond)[: last - first])
        sens.append(np.asarray(sensitivity)[: last - first])
    return Outcome(results, np.concatenate(conds), np.concatenate(sens))

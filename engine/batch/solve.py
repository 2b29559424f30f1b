"""One group of tasks from packed arrays to per-task outcomes: starts (given, screened or from the
variable-projection scan), the lane pool, and the conditioning check at each task's best point.
Every program it runs is declared by its group's shapes and the tuning's ladders."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..plan import Group, TaskBatch, pack, pack_starts
from ..solvers.linalg import UNROLL_MAX
from ..types import Race
from . import pool, programs
from .rows import conditioning
from .tuning import Tuning, fitting, ladder, power_of_two_at_most


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A group's solve, per task (numpy): the pool's `Results` and, at each task's best restart,
    log10 of the condition number of the column-scaled J^T J [tasks], each free parameter's
    sensitivity [tasks, n_free] and its share of J^T J's near-null space [tasks, n_free]."""

    results: pool.Results
    log10_cond: np.ndarray
    sensitivity: np.ndarray
    null_share: np.ndarray


def fit_of(grp: Group) -> programs.Fit:
    return programs.Fit(grp.law, grp.objective, grp.free, grp.n_pad, grp.grid)


def pool_fit(grp: Group) -> programs.Fit:
    """The lanes' view: fits summed over tables see one pseudo-point per table row and column
    (`TaskBatch.tables_only`), so their pools are keyed by the table shape alone."""
    if grp.grid is None:
        return fit_of(grp)
    return dataclasses.replace(fit_of(grp), n_pad=grp.grid[0] + grp.grid[1])


def pool_keys(grp: Group, solver: str, options, tuning: Tuning, race: Race | None = None) -> list[programs.PoolKey]:
    """The ladder of pool shapes for `grp`, largest first. Point sums: one restart a row, so every
    lane takes any task's restart, unless a race needs a task's restarts side by side (series of
    more than `tuning.shared_points` points). Table sums and raced series: a row holds one task,
    whose restarts share its data; a single task with many starts is one wide row that narrows in
    the tail."""
    fit = pool_fit(grp)
    if grp.grid is None:
        lanes = min(tuning.pool_lanes, tuning.lane_points // grp.n_pad)
    else:
        lanes = min(tuning.pool_lanes, tuning.lane_cells // (grp.grid[0] * grp.grid[1]))
    shared = grp.grid is not None or (race is not None and grp.n_pad > tuning.shared_points)
    # Lanes stepped all together (one restart a row over point sums) keep at least
    # `programs.MIN_DEVICE_LANES` a device in every pool, so that a fit rounds alike in any of them.
    together = not shared and len(grp.free) <= UNROLL_MAX
    floor = programs.min_together_lanes(tuning.min_lanes) if together else tuning.min_lanes
    lanes = max(power_of_two_at_most(lanes), floor)
    width = min(power_of_two_at_most(grp.n_restarts), lanes) if shared else 1
    rows = max(lanes // width, 1)
    if grp.grid is not None:
        # Table sums: one shape per table shape (a job has many table shapes; each compiles once).
        shapes = [(rows, width)]
    elif rows == 1:
        # A wide row narrows to min_lanes at most: it stays wide enough for the stacked path.
        shapes = [(1, w) for w in ladder(width, tuning)]
    else:
        shapes = [(r, width) for r in ladder(rows, tuning, minimum=1 if width > 1 else floor)]
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


def starts_for(grp: Group, batch: TaskBatch, tuning: Tuning) -> np.ndarray:
    """Each task's starts [tasks, restarts, n_free]: as given, the best of its grid by objective
    ("screen"), the best of each block of its random draws ("draws"), or the best points of the
    variable-projection scan ("varpro")."""
    members = grp.members
    if grp.init_kind == "starts":
        return pack_starts(grp, members)
    fit = fit_of(grp)
    screened = grp.init_kind in ("screen", "draws")
    if screened and grp.grid is not None:  # screening sums over the tables only
        fit, batch = pool_fit(grp), batch.tables_only()
    n_tasks = len(members)
    grid = pack_starts(grp, members) if screened else None
    n_grid = grid.shape[1] if grid is not None else 0
    parts = []
    for first, last, size in _in_batches(_batched(n_tasks, grp.n_pad * max(n_grid, 64), tuning), n_tasks):
        index = np.minimum(np.arange(first, first + size), last - 1)
        key = programs.StartKey(fit, grp.init_kind, size, grp.n_restarts, n_grid)
        args = (batch.take(index),) + ((grid[index],) if grid is not None else ())
        parts.append(np.asarray(programs.starts(key)(*args))[: last - first])
    return np.concatenate(parts)


def _check_batches(grp: Group, tuning: Tuning) -> list[tuple[int, int, programs.CheckKey]]:
    """The conditioning check's batches for `grp`: (first task, last task, program)."""
    n_tasks = len(grp.members)
    check_fit = dataclasses.replace(fit_of(grp), table=None)
    batches = _in_batches(_batched(n_tasks, grp.n_pad, tuning), n_tasks)
    return [(first, last, programs.CheckKey(check_fit, size)) for first, last, size in batches]


def check_keys(grp: Group, tuning: Tuning) -> list[programs.CheckKey]:
    """The conditioning check's programs for `grp`, one a batch (`diagnose`)."""
    return [key for _, _, key in _check_batches(grp, tuning)]


def diagnose(grp: Group, batch: TaskBatch, results: pool.Results, tuning: Tuning) -> Outcome:
    """The conditioning check at each task's best restart (over the points, in batches)."""
    n_tasks = results.objective.shape[0]
    ranked = np.where(np.isfinite(results.objective), results.objective, np.inf)
    best = results.theta[np.arange(n_tasks), np.argmin(ranked, axis=1)]
    points = batch.points_only()
    parts = []
    for first, last, key in _check_batches(grp, tuning):
        index = np.minimum(np.arange(first, first + key.n_tasks), last - 1)
        found = programs.check(key)(points.take(index), best[index])
        parts.append([np.asarray(item)[: last - first] for item in found])
    scaled, sensitivity = (np.concatenate(column) for column in zip(*parts, strict=True))
    cond, null_share = conditioning(scaled)
    return Outcome(results, cond, sensitivity, null_share)


class Runner:
    """Pools for every program of a job, fed group by group; `done(group, outcome)` is called as
    each group's fits are all in (in an order that depends only on the lanes' progress)."""

    def __init__(self, solver: str, options, tuning: Tuning, max_steps: int, progress=None, race=None):
        self.solver, self.options, self.tuning, self.max_steps = solver, options, tuning, max_steps
        self.progress, self.race = progress, race
        self.pools: dict[tuple, list[pool.Pool]] = {}

    def add(self, grp: Group, done) -> None:
        keys = pool_keys(grp, self.solver, self.options, self.tuning, self.race)
        # Archived programs load in the background while the starts are found and the first calls run.
        programs.prefetch([*keys[:1], *dict.fromkeys(check_keys(grp, self.tuning)), *keys[1:]])
        batch = pack(grp, grp.members)
        starts = starts_for(grp, batch, self.tuning)
        twins = self.pools.get(tuple(keys))
        if twins is None:
            lead = pool.Pool(keys, self.tuning, self.max_steps, self.progress, self.race)
            twins = self.pools[tuple(keys)] = [lead] + [
                pool.Pool(keys, self.tuning, self.max_steps, self.progress, self.race, lead)
                for _ in range(self.tuning.pools_per_program - 1)
            ]
        # A program's pools share one queue: while one pool's call runs, the host refills another.
        target = twins[0]

        def finished(segment: pool.Segment) -> None:
            done(grp, diagnose(grp, batch, segment.results, self.tuning))

        lanes_batch = batch.tables_only() if grp.grid is not None else batch
        target.add(pool.Segment(lanes_batch, starts, finished))

    def _all(self) -> list[pool.Pool]:
        return [p for twins in self.pools.values() for p in twins]

    @property
    def working(self) -> bool:
        return any(p.working for p in self._all())

    @property
    def hungry(self) -> bool:
        """Whether some pool would run short of queued fits at its next refill."""
        return any(p.pending < max(p.lanes, 1) for p in self._all() if p.working) or not self.working

    def step(self) -> None:
        """One call of every pool that has work, in the order the pools were made."""
        for p in self._all():
            if p.working:
                p.step()

"""Continuous batching: a fixed pool of lanes, refilled from the stream of (task, restart) fits.

A pool program (`programs.pool`) owns `rows` task slots of `width` restart lanes; the lanes of a
row share its task's data. Every `steps_per_call` driver steps the host reads which lanes are done,
copies their results out and loads the next restart of the row's task into each free lane. A row
whose task has no restart left and no lane busy takes the first task that still has restarts (its
data into the row, its next restarts into the lanes). The shapes never change, so a job runs on the
programs it declared before it started. When no task has restarts left and the busy lanes fit the
next smaller shape of the ladder (`PoolKey`s, largest first), they move there, so the tail of a job
does not step a mostly idle pool.

What is loaded where and when depends only on the lanes' statuses after each call, never on
timings, and every lane computes the same arithmetic in any row of any pool: a fit's result does
not depend on where or when it ran.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import numpy as np

from ..plan import TaskBatch
from ..solvers.loop import active
from ..types import Status
from . import programs
from .tuning import Tuning


@dataclasses.dataclass(frozen=True)
class Results:
    """Per (task, restart) outcomes of a pool run (numpy): theta [tasks, restarts, n_free], objective,
    status, iterations (solver iterations) and evaluations [tasks, restarts]."""

    theta: np.ndarray
    objective: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    evaluations: np.ndarray


class _Lanes:
    """The host's view of a pool: which task each row holds and which restart each lane runs."""

    def __init__(self, rows: int, width: int):
        self.row_task = np.full(rows, -1)
        self.lane_restart = np.full((rows, width), -1)


def _lane_order(lane_restart: np.ndarray, width: int) -> np.ndarray:
    """Per row, lane indices with busy lanes first (stable), cut to `width`: where a row's lanes go
    when the pool narrows."""
    return np.argsort(lane_restart < 0, axis=1, kind="stable")[:, :width]


def run(
    keys: list[programs.PoolKey],
    batch: TaskBatch,
    starts: np.ndarray,
    tuning: Tuning,
    max_steps: int,
    device=None,
    progress=None,
) -> Results:
    """Solve every task of `batch` from each of its `starts: [tasks, restarts, n_free]`.

    keys: the pool programs of one ladder, largest first (same fit and solver); the run starts in
    the smallest that holds all its lanes and moves down the ladder in the tail.
    progress: called with the number of tasks that finished, after each call that finished some.
    """
    n_tasks, n_restarts, n_free = starts.shape
    out = Results(
        theta=np.zeros((n_tasks, n_restarts, n_free)),
        objective=np.full((n_tasks, n_restarts), np.inf),
        status=np.full((n_tasks, n_restarts), int(Status.MAX_ITER)),
        iterations=np.zeros((n_tasks, n_restarts), np.int64),
        evaluations=np.zeros((n_tasks, n_restarts), np.int64),
    )
    size = [key.rows * key.width for key in keys]
    level = next((i for i in range(len(keys) - 1, -1, -1) if size[i] >= n_tasks * n_restarts), 0)
    key = keys[level]
    state = programs.empty_state(key)
    data = batch.take(np.zeros(key.rows, dtype=np.int64))  # task 0's data (finite) in every row
    lanes = _Lanes(key.rows, key.width)
    next_restart = np.zeros(n_tasks, np.int64)  # per task, its next restart to load
    left = np.full(n_tasks, n_restarts)  # per task, restarts not finished
    first_pending = 0  # the first task with restarts to load
    put = (lambda tree: jax.device_put(tree, device)) if device is not None else (lambda tree: tree)
    budget = np.int32(max_steps)
    while True:
        # Once nothing is left to load, calls run longer in the smaller pools: there is nothing to
        # refill, only stragglers to finish (a call costs ~1 ms of dispatch and host work).
        stretch = 1 if first_pending < n_tasks else size[0] // size[level]
        n_steps = np.int32(tuning.steps_per_call * stretch)
        mask = np.zeros(lanes.lane_restart.shape, bool)
        # Free lanes of rows whose task has restarts left take them, in lane order.
        held = np.flatnonzero(lanes.row_task >= 0)
        for row in held[next_restart[lanes.row_task[held]] < n_restarts]:
            first_pending = _load(lanes, mask, row, lanes.row_task[row], next_restart, n_restarts, first_pending)
        # Empty rows take the first tasks that have restarts left.
        empty = np.flatnonzero(lanes.row_task < 0)
        if empty.size and first_pending < n_tasks:
            if n_restarts <= key.width and next_restart[first_pending] == 0:
                # The common case at once: each empty row takes a whole untouched task.
                rows = empty[: n_tasks - first_pending]
                tasks = np.arange(first_pending, first_pending + rows.size)
                lanes.row_task[rows] = tasks
                lanes.lane_restart[rows, :n_restarts] = np.arange(n_restarts)
                mask[rows, :n_restarts] = True
                next_restart[tasks] = n_restarts
                first_pending += rows.size
            else:
                rows, tasks = [], []
                for row in empty:
                    if first_pending >= n_tasks:
                        break
                    rows.append(row)
                    tasks.append(first_pending)
                    lanes.row_task[row] = first_pending
                    first_pending = _load(lanes, mask, row, first_pending, next_restart, n_restarts, first_pending)
                rows, tasks = np.asarray(rows), np.asarray(tasks)
            data = _assign(data, rows, batch.take(tasks))
        theta = np.zeros(mask.shape + (n_free,))
        rows, lane = np.nonzero(mask)
        theta[rows, lane] = starts[lanes.row_task[rows], lanes.lane_restart[rows, lane]]
        state = programs.pool(key)(state, put(data), mask, theta, n_steps, budget)
        status = np.asarray(state.status)
        done = (lanes.lane_restart >= 0) & ~active(status)
        if done.any():
            rows, lane = np.nonzero(done)
            task, restart = lanes.row_task[rows], lanes.lane_restart[rows, lane]
            out.theta[task, restart] = np.asarray(state.theta)[rows, lane]
            out.objective[task, restart] = np.asarray(state.f)[rows, lane]
            out.status[task, restart] = status[rows, lane]
            out.iterations[task, restart] = np.asarray(state.n_steps)[rows, lane]
            out.evaluations[task, restart] = np.asarray(state.n_evals)[rows, lane]
            lanes.lane_restart[done] = -1
            before = np.count_nonzero(left == 0)
            np.subtract.at(left, task, 1)
            if progress is not None:
                progress(np.count_nonzero(left == 0) - before)
        # A row is free once its task has nothing left to load and no lane busy.
        held = lanes.row_task >= 0
        empty = held & (lanes.lane_restart < 0).all(axis=1)
        empty &= next_restart[np.maximum(lanes.row_task, 0)] >= n_restarts
        lanes.row_task[empty] = -1
        if first_pending < n_tasks:
            continue
        busy_rows = np.flatnonzero((lanes.lane_restart >= 0).any(axis=1))
        if busy_rows.size == 0:
            return out
        busy_width = int((lanes.lane_restart >= 0).sum(axis=1).max())
        smaller = next(
            (
                i
                for i in range(len(keys) - 1, level, -1)
                if keys[i].rows >= busy_rows.size and keys[i].width >= busy_width
            ),
            None,
        )
        if smaller is not None:
            # The tail: the busy lanes move to a smaller pool of the ladder.
            level, key = smaller, keys[smaller]
            rows = np.concatenate([busy_rows, np.full(key.rows - busy_rows.size, busy_rows[0])])
            idle = np.arange(key.rows) >= busy_rows.size
            order = _lane_order(lanes.lane_restart[rows], key.width)
            state = jax.tree.map(lambda leaf: _gather_lanes(np.asarray(leaf), rows, order), state)
            lane_restart = np.take_along_axis(lanes.lane_restart[rows], order, axis=1)
            lane_restart[idle] = -1
            status = np.where(lane_restart < 0, Status.IDLE, np.asarray(state.status))
            state = eqx.tree_at(lambda s: s.status, state, status.astype(state.status.dtype))
            data = data.take(rows)
            row_task = np.where(idle, -1, lanes.row_task[rows])
            lanes = _Lanes(key.rows, key.width)
            lanes.row_task, lanes.lane_restart = row_task, lane_restart


def _gather_lanes(leaf: np.ndarray, rows: np.ndarray, order: np.ndarray) -> np.ndarray:
    """leaf [rows, width, ...] -> the lanes `order` [rows', width'] of `rows`."""
    picked = leaf[rows]
    return picked[np.arange(rows.size)[:, None], order]


def _load(lanes: _Lanes, mask, row: int, task: int, next_restart, n_restarts: int, first_pending: int) -> int:
    """Load `task`'s next restarts into the free lanes of `row`; returns the new first pending task."""
    free = np.flatnonzero(lanes.lane_restart[row] < 0)
    count = min(free.size, n_restarts - next_restart[task])
    lanes.lane_restart[row, free[:count]] = np.arange(next_restart[task], next_restart[task] + count)
    mask[row, free[:count]] = True
    next_restart[task] += count
    while first_pending < next_restart.size and next_restart[first_pending] >= n_restarts:
        first_pending += 1
    return first_pending


def _assign(data: TaskBatch, rows: np.ndarray, tasks: TaskBatch) -> TaskBatch:
    """`data` with `rows` replaced by `tasks` (host arrays, written in place)."""

    def write(leaf, new):
        leaf = np.asarray(leaf)
        if not leaf.flags.writeable:
            leaf = leaf.copy()
        leaf[rows] = new
        return leaf

    return jax.tree.map(write, data, tasks)

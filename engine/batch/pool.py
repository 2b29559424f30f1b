"""Continuous batching: a fixed pool of lanes, refilled from a stream of (task, restart) fits.

A pool program (`programs.pool`) owns `rows` task slots of `width` restart lanes; the lanes of a
row share its task's data. Work arrives as segments (one group's tasks, their data and starts),
queued in order. Every call the host reads which lanes are done, copies their results into their
segment and loads the next restart of the row's task into each free lane; a row whose task has no
restart left and no lane busy takes the next task of the queue (its data into the row, its next
restarts into the lanes). The shapes never change, so a job runs on the programs it declared: the
ladder of `PoolKey`s, largest first. A pool moves to the smallest shape of the ladder that holds its
work (up as work arrives, down in the tail, when no more will come), carrying its busy lanes.

What is loaded where and when depends only on the lanes' statuses after each call, never on
timings, and every lane computes the same arithmetic in any row of any pool: a fit's result does
not depend on where or when it ran.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np

from ..plan import TaskBatch
from ..solvers.loop import active
from ..types import Race, Status
from . import programs
from .tuning import Tuning


@dataclasses.dataclass(frozen=True)
class Results:
    """Per (task, restart) outcomes (numpy): theta [tasks, restarts, n_free], objective, status,
    iterations (solver iterations) and evaluations [tasks, restarts]."""

    theta: np.ndarray
    objective: np.ndarray
    status: np.ndarray
    iterations: np.ndarray
    evaluations: np.ndarray

    @classmethod
    def empty(cls, n_tasks: int, n_restarts: int, n_free: int) -> Results:
        return cls(
            theta=np.zeros((n_tasks, n_restarts, n_free)),
            objective=np.full((n_tasks, n_restarts), np.inf),
            status=np.full((n_tasks, n_restarts), int(Status.MAX_ITER)),
            iterations=np.zeros((n_tasks, n_restarts), np.int64),
            evaluations=np.zeros((n_tasks, n_restarts), np.int64),
        )


class Segment:
    """Tasks handed to a pool together: batch (their data), starts [tasks, restarts, n_free], the
    results as they come, and `done(segment)`, called once every fit of the segment is in."""

    def __init__(self, batch: TaskBatch, starts: np.ndarray, done: Callable[[Segment], None]):
        self.batch, self.starts, self.done = batch, starts, done
        n_tasks, n_restarts, n_free = starts.shape
        self.n_tasks, self.n_restarts = n_tasks, n_restarts
        self.results = Results.empty(n_tasks, n_restarts, n_free)
        self.next_restart = np.zeros(n_tasks, np.int64)  # per task, its next restart to load
        self.left = np.full(n_tasks, n_restarts)  # per task, restarts not finished
        self.first_pending = 0  # the first task with restarts to load
        self.checkpoint_f = np.full((n_tasks, n_restarts), np.inf)  # f at each restart's last race checkpoint

    @property
    def pending(self) -> int:
        """Fits not loaded yet."""
        return int(self.n_tasks * self.n_restarts - self.next_restart.sum())

    def load(self, lanes: np.ndarray, task: int) -> np.ndarray:
        """Restarts of `task` for the free `lanes` (as many as it has left); advances the queue."""
        count = min(lanes.size, self.n_restarts - self.next_restart[task])
        restarts = np.arange(self.next_restart[task], self.next_restart[task] + count)
        self.next_restart[task] += count
        self._advance()
        return restarts

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The queue's next `n` (task, restart) fits in order, or as many as are left: (tasks [k],
        restarts [k]); advances the queue. The fits `load` would give task after task, in one go."""
        first = self.first_pending
        left = self.n_restarts - self.next_restart[first : first + n]  # each task has >= 1 fit left
        if not left.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ends = np.cumsum(left)
        last = min(int(np.searchsorted(ends, n)), left.size - 1)  # the task holding the n-th fit
        counts = left[: last + 1].copy()
        counts[-1] -= max(int(ends[last]) - n, 0)
        tasks = np.repeat(np.arange(first, first + last + 1), counts)
        within = np.arange(tasks.size) - np.repeat(np.cumsum(counts) - counts, counts)
        restarts = self.next_restart[tasks] + within
        self.next_restart[first : first + last + 1] += counts
        self._advance()
        return tasks, restarts

    def _advance(self) -> None:
        while self.first_pending < self.n_tasks and self.next_restart[self.first_pending] >= self.n_restarts:
            self.first_pending += 1


class Pool:
    """A ladder of pool programs for one fit and solver, and the lanes' state between calls.

    progress: called with the number of tasks that finished after each call that finished some.
    race: prune restarts far behind their task's best at checkpoints (`types.Race`); None runs
    every restart to its end.
    """

    def __init__(
        self,
        keys: list[programs.PoolKey],
        tuning: Tuning,
        max_steps: int,
        progress=None,
        race: Race | None = None,
        lead: Pool | None = None,
    ):
        self.keys, self.tuning, self.progress, self.race = keys, tuning, progress, race
        self.budget = np.int32(max_steps)
        # Races need a task's restarts side by side in one row: pools of one restart a row never pause.
        self.pause_every = np.int32(race.every if race is not None and keys[0].width > 1 else 0)
        self.sizes = [key.rows * key.width for key in keys]
        # The pools of one program share the lead's queue: each takes the next fits whenever it has
        # free lanes. Once nothing is queued, a follower's busy rows move into the lead's free rows
        # (`_absorb`), so the job has one tail, not one a pool.
        self.lead, self.followers = lead, []
        self.queue: collections.deque[Segment] = collections.deque() if lead is None else lead.queue
        if lead is not None:
            lead.followers.append(self)
        self.parked = False  # a follower waiting, not running, for the lead to take its rows
        self.level = None  # index into keys; None until work arrives
        self.state = None
        self._data = None
        self.placed = None  # `data` on the devices as the current program takes it, once copied
        self.row_segment: list[Segment | None] = []
        self.row_task = np.zeros(0, np.int64)
        self.lane_restart = np.zeros((0, 0), np.int64)
        self.wanted = None  # the smaller program the tail would move to once it is worth a compile
        self.in_flight = False  # a call was launched and its results not read yet

    @property
    def data(self):
        """The rows' task data (host arrays, `TaskBatch`); assigning it drops its device copy."""
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data, self.placed = value, None

    @property
    def key(self) -> programs.PoolKey:
        return self.keys[self.level]

    @property
    def pending(self) -> int:
        return sum(segment.pending for segment in self.queue)

    @property
    def busy(self) -> int:
        return int(np.count_nonzero(self.lane_restart >= 0))

    @property
    def working(self) -> bool:
        return self.busy > 0 or self.pending > 0

    @property
    def lanes(self) -> int:
        return self.sizes[self.level] if self.level is not None else 0

    def add(self, segment: Segment) -> None:
        self.queue.append(segment)

    def step(self) -> None:
        """Read the last call's results (waiting for it), then refill and launch the next call
        without waiting for it: the host's work until this pool's next step (another pool's
        refill, the next chunk's packing, rows) overlaps the device's."""
        if self.in_flight:
            self.in_flight = False
            self._harvest()
        for other in self.followers:
            if other.parked:
                self._absorb(other)
        if not self.working:
            return
        if self._parks():
            self.parked = True
            return
        self._resize()
        key = self.key
        mask = np.zeros(self.lane_restart.shape, bool)
        theta = np.zeros(mask.shape + (len(key.fit.free),))
        # Free lanes of rows whose task has restarts left take them, in lane order (a row keeps its
        # task only while it has restarts to load or lanes busy: `_harvest`).
        for row in np.flatnonzero((self.row_task >= 0) & (self.lane_restart < 0).any(axis=1)):
            segment, task = self.row_segment[row], self.row_task[row]
            if segment.next_restart[task] < segment.n_restarts:
                lanes = np.flatnonzero(self.lane_restart[row] < 0)
                restarts = segment.load(lanes, task)
                self._put(row, segment, task, lanes[: restarts.size], restarts, mask, theta)
        # Empty rows take the next tasks of the queue, in order.
        empty = collections.deque(np.flatnonzero(self.row_task < 0).tolist())
        for segment in self.queue:
            placed_rows, placed_tasks = [], []
            if key.width == 1 and empty:
                # One restart a row: the empty rows take the queue's next fits, in order, at once.
                tasks, restarts = segment.take(len(empty))
                rows = np.array([empty.popleft() for _ in range(tasks.size)], np.int64)
                self.row_task[rows] = tasks
                for row in rows.tolist():
                    self.row_segment[row] = segment
                self.lane_restart[rows, 0] = restarts
                mask[rows, 0] = True
                theta[rows, 0] = segment.starts[tasks, restarts]
                placed_rows.append(rows)
                placed_tasks.append(tasks)
            while key.width > 1 and empty and segment.first_pending < segment.n_tasks:
                # A row of lanes takes the next task and its next restarts.
                task, row = segment.first_pending, empty.popleft()
                restarts = segment.load(np.arange(key.width), task)
                self._put(row, segment, task, np.arange(restarts.size), restarts, mask, theta)
                placed_rows.append(np.array([row]))
                placed_tasks.append(np.array([task]))
            if placed_rows:
                rows, tasks = np.concatenate(placed_rows), np.concatenate(placed_tasks)
                self.data = _assign(self.data, rows, segment.batch.take(tasks))
            if not empty:
                break
        kept = [segment for segment in self.queue if segment.pending]
        self.queue.clear()  # in place: the queue may be shared
        self.queue.extend(kept)
        # With nothing left to load, calls run longer in the smaller pools: there is nothing to
        # refill, only stragglers to finish (a call costs ~1 ms of dispatch and host work).
        stretch = self.sizes[0] // self.sizes[self.level] if not self.queue else 1
        n_steps = np.int32(self.tuning.steps_per_call * stretch)
        program = programs.pool(key)
        if self.placed is None:  # the rows' data changed: copied to the devices once, not every call
            self.placed = program.place((self.state, self.data), 1)
        self.state = program(self.state, self.placed, mask, theta, n_steps, self.budget, self.pause_every)
        if self.wanted is not None:
            extra = (self.lanes - self.sizes[self.wanted]) * key.fit.n_pad * int(n_steps)
            programs.TAIL_RENT[self.keys[self.wanted]] += extra
        self.in_flight = True

    def _parks(self) -> bool:
        """A follower stops launching once nothing is queued and the lead, whose call is running,
        has free rows of the same width for all its busy rows: the lead takes them at its next step."""
        lead = self.lead
        if lead is None or self.queue or not lead.in_flight or lead.key.width != self.key.width:
            return False
        busy_rows = np.count_nonzero((self.lane_restart >= 0).any(axis=1))
        return np.count_nonzero(lead.row_task < 0) >= busy_rows

    def _absorb(self, other: Pool) -> None:
        """Move the parked follower's busy rows (their lanes' states, data and bookkeeping) into free
        rows of this pool; the follower is left idle. A lane's arithmetic is the same in any pool."""
        other.parked = False
        source = np.flatnonzero((other.lane_restart >= 0).any(axis=1))
        target = np.flatnonzero(self.row_task < 0)[: source.size]
        if target.size < source.size:
            return  # no room after all: the follower runs on

        def move(mine, theirs):
            mine = np.array(mine)  # a writable host copy
            mine[target] = np.asarray(theirs)[source]
            return mine

        self.state = jax.tree.map(move, self.state, other.state)
        self.data = _assign(self.data, target, other.data.take(source))
        for to, origin in zip(target.tolist(), source.tolist(), strict=True):
            self.row_segment[to] = other.row_segment[origin]
            other.row_segment[origin] = None
        self.row_task[target] = other.row_task[source]
        self.lane_restart[target] = other.lane_restart[source]
        other.row_task[source] = -1
        other.lane_restart[source] = -1
        idle = np.full(other.lane_restart.shape, Status.IDLE, np.asarray(other.state.status).dtype)
        other.state = eqx.tree_at(lambda s: s.status, other.state, idle)  # it has no busy lane left

    def _put(self, row, segment, task, lanes, restarts, mask, theta) -> None:
        self.row_segment[row], self.row_task[row] = segment, task
        self.lane_restart[row, lanes] = restarts
        mask[row, lanes] = True
        theta[row, lanes] = segment.starts[task, restarts]

    def _harvest(self) -> None:
        status = np.asarray(self.state.status)
        if self.pause_every:
            status = self._race(status)
        done = (self.lane_restart >= 0) & ~active(status) & (status != Status.PAUSED)
        if done.any():
            rows, lane = np.nonzero(done)
            theta, f = np.asarray(self.state.theta), np.asarray(self.state.f)
            n_steps, n_evals = np.asarray(self.state.n_steps), np.asarray(self.state.n_evals)
            owner = np.array([id(self.row_segment[r]) for r in rows])
            finished, complete = 0, []
            for ident in dict.fromkeys(owner.tolist()):
                mine = owner == ident
                r, j = rows[mine], lane[mine]
                segment = self.row_segment[r[0]]
                task, restart = self.row_task[r], self.lane_restart[r, j]
                out = segment.results
                out.theta[task, restart] = theta[r, j]
                out.objective[task, restart] = f[r, j]
                out.status[task, restart] = status[r, j]
                out.iterations[task, restart] = n_steps[r, j]
                out.evaluations[task, restart] = n_evals[r, j]
                before = np.count_nonzero(segment.left == 0)
                np.subtract.at(segment.left, task, 1)
                finished += np.count_nonzero(segment.left == 0) - before
                if not segment.left.any():
                    complete.append(segment)
            self.lane_restart[done] = -1
            if self.progress is not None and finished:
                self.progress(finished)
        else:
            complete = []
        # A row is free once its task has nothing left to load and no lane busy.
        for row in np.flatnonzero((self.row_task >= 0) & (self.lane_restart < 0).all(axis=1)):
            segment = self.row_segment[row]
            if segment.next_restart[self.row_task[row]] >= segment.n_restarts:
                self.row_task[row], self.row_segment[row] = -1, None
        for segment in complete:
            segment.done(segment)

    def _race(self, status: np.ndarray) -> np.ndarray:
        """Resume, prune or stop as stalled the lanes paused at a checkpoint (`types.Race`). A raced
        row is decided once none of its lanes is still running: the task's finished restarts and
        its paused ones are then all in, each paused one at the same evaluation count. A task with
        more restarts than the widest row (run in waves) is not pruned; its lanes only take the
        stall test, at once."""
        paused = status == Status.PAUSED
        if not paused.any():
            return status
        dtype, status = status.dtype, status.copy()
        busy = self.lane_restart >= 0
        f = np.asarray(self.state.f)
        n_evals = np.asarray(self.state.n_evals) if self.race.extrapolate else None
        for row in np.flatnonzero(paused.any(axis=1)):
            segment, task, lanes = self.row_segment[row], self.row_task[row], paused[row]
            raced = segment.n_restarts <= self.keys[0].width
            if raced and active(status[row][busy[row]]).any():
                continue  # a restart of this task is still on its way to the checkpoint
            keep = np.ones_like(lanes)
            if raced:
                seen = np.concatenate([segment.results.objective[task], f[row, busy[row]]])
                seen = seen[np.isfinite(seen)]
                if seen.size:
                    best = seen.min()
                    keep = f[row] - best <= (self.race.factor - 1.0) * abs(best)
            restarts = self.lane_restart[row, lanes]
            last = np.full(lanes.shape, np.inf)
            last[lanes] = segment.checkpoint_f[task, restarts]
            if raced and self.race.extrapolate and seen.size:
                # Behind the best even if it kept its last checkpoint's gain to the end of its budget.
                left = (self.budget - n_evals[row]) / self.race.every
                with np.errstate(invalid="ignore"):
                    reach = f[row] - np.maximum(left, 0.0) * (last - f[row])
                keep &= ~(np.isfinite(last) & (reach > best + 1e-6 * abs(best)))
            with np.errstate(invalid="ignore"):  # no checkpoint yet: inf - inf, never stalled
                stalled = f[row] >= last - self.race.stall * np.abs(last)
            segment.checkpoint_f[task, restarts] = f[row, lanes]
            decided = np.select([~keep, stalled], [Status.PRUNED, Status.STALLED], Status.RUNNING)
            status[row] = np.where(lanes, decided, status[row])
        self.state = eqx.tree_at(lambda s: s.status, self.state, status.astype(dtype))
        return status

    def _resize(self) -> None:
        """Move to the smallest shape that holds the busy lanes and the queued fits, when it differs
        from the current one: up as work arrives, down once nothing is queued (the tail, or a
        straggler while no more work can come yet). Every shape of the ladder is compiled once."""
        self.wanted = None
        needed = self.busy + self.pending
        busy_rows = np.flatnonzero((self.lane_restart >= 0).any(axis=1))
        busy_width = int((self.lane_restart >= 0).sum(axis=1).max()) if busy_rows.size else 0
        fits = [
            i
            for i, key in enumerate(self.keys)
            if self.sizes[i] >= needed and key.rows >= busy_rows.size and key.width >= busy_width
        ]
        level = fits[-1] if fits else 0
        if self.level is not None and (level == self.level or (level > self.level and self.pending)):
            return  # shrink only when nothing is queued
        if self.level is not None and level > self.level:
            # The tail moves to the smallest shape that holds it when that program is ready (compiled
            # or archived) or tails in this process have spent about a compile in larger pools that
            # it would have held (rent or buy, in lane-point-steps, never seconds); else to the
            # smallest ready one that holds it; else it stays and pays rent towards the wanted one.
            # A short tail finishes where it is; a process that keeps paying compiles it once.
            ready = [i for i in fits if i > self.level and programs.is_ready(self.keys[i])]
            if programs.TAIL_RENT[self.keys[level]] < self.tuning.shrink_lane_point_steps:
                if not ready:
                    self.wanted = level
                    return
                level = ready[-1]  # `level` itself when it is ready
        key = self.keys[level]
        if self.level is None:
            self.level = level
            self.state = programs.empty_state(key)
            first = self.queue[0].batch
            self.data = first.take(np.zeros(key.rows, np.int64))  # finite data in every row
            self.row_segment = [None] * key.rows
            self.row_task = np.full(key.rows, -1)
            self.lane_restart = np.full((key.rows, key.width), -1)
            return
        # Carry the busy rows (their busy lanes first) into the new shape; the rest start idle.
        rows = np.concatenate([busy_rows, np.full(key.rows - busy_rows.size, busy_rows[0] if busy_rows.size else 0)])
        idle = np.arange(key.rows) >= busy_rows.size
        old = self.lane_restart[rows]
        if old.shape[1] < key.width:
            old = np.pad(old, ((0, 0), (0, key.width - old.shape[1])), constant_values=-1)
        order = np.argsort(old < 0, axis=1, kind="stable")[:, : key.width]
        lane_restart = np.take_along_axis(old, order, axis=1)
        lane_restart[idle] = -1

        def carry(leaf):
            leaf = np.asarray(leaf)[rows]
            if leaf.shape[1] < key.width:
                pad = [(0, 0), (0, key.width - leaf.shape[1])] + [(0, 0)] * (leaf.ndim - 2)
                leaf = np.pad(leaf, pad)
            return leaf[np.arange(rows.size)[:, None], order]

        state = jax.tree.map(carry, self.state)
        status = np.where(lane_restart < 0, Status.IDLE, np.asarray(state.status))
        self.state = eqx.tree_at(lambda s: s.status, state, status.astype(state.status.dtype))
        self.data = self.data.take(rows)
        self.row_segment = [None if idle[i] else self.row_segment[r] for i, r in enumerate(rows)]
        self.row_task = np.where(idle, -1, self.row_task[rows])
        self.lane_restart = lane_restart
        self.level = level


def _assign(data: TaskBatch, rows: np.ndarray, tasks: TaskBatch) -> TaskBatch:
    """`data` with `rows` replaced by `tasks` (host arrays, written in place)."""

    def write(leaf, new):
        leaf = np.asarray(leaf)
        if not leaf.flags.writeable:
            leaf = leaf.copy()
        leaf[rows] = new
        return leaf

    return jax.tree.map(write, data, tasks)

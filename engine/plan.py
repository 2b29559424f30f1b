"""Planner: validate tasks, group them by compiled program (law x objective x free parameters x
restarts), bucket by number of points, and pack each bucket into padded, masked arrays
`[tasks, n_pad, ...]` with the starts laid out as `[tasks, restarts, n_free]`."""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np

from lawfit import kernels

from .solvers.linalg import power_of_two_at_least
from .types import Objective, Status, Task


class TaskError(ValueError):
    """A task that cannot be fitted; carries the status code for its result row."""

    def __init__(self, status: Status, message: str):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A validated task: arrays as float64, the law resolved, the free parameters known."""

    index: int
    task: Task
    law: kernels.Law
    inputs: np.ndarray  # [n_points, n_inputs]
    target: np.ndarray  # [n_points]
    weights: np.ndarray  # [n_points]
    free: tuple[int, ...]
    theta_fixed: np.ndarray  # [n_params]
    init_kind: str  # "grid" | "screen" | "draws" | "random" | "explicit" | "varpro"
    starts: np.ndarray | None  # [restarts, n_free]; None for varpro and random (drawn per group)
    n_random: int = 0  # random starts to draw (`random_starts`, at packing)

    @property
    def n_points(self) -> int:
        return self.target.shape[0]

    @property
    def n_starts(self) -> int:
        """Starts given or to draw (0 for varpro)."""
        return self.starts.shape[0] if self.starts is not None else self.n_random

    @functools.cached_property
    def distinct(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(distinct values of input 0, of input 1, each point's index into them): the table a
        separable law is summed over (`solvers.grid`)."""
        rows, row_of = np.unique(self.inputs[:, 0], return_inverse=True)
        columns, column_of = np.unique(self.inputs[:, 1], return_inverse=True)
        return rows, columns, row_of.reshape(-1), column_of.reshape(-1)


def _check_values(name: str, values: np.ndarray, *, positive: bool) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise TaskError(Status.INVALID_INPUT, f"{name}: non-finite values (NaN/inf) at rows {rows}")
    if positive:
        bad = values <= 0
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            raise TaskError(
                Status.INVALID_INPUT,
                f"{name}: must be > 0 (the law takes its log); got {values[bad][:3].tolist()} at rows {rows}",
            )


@functools.cache
def _positive_columns(law: kernels.Law) -> list[int]:
    return [column for column, name in enumerate(law.inputs) if name in law.positive_inputs]


def _plainly_valid(law: kernels.Law, objective: Objective, inputs: np.ndarray, target: np.ndarray) -> bool:
    """Whether every `_check_values` check of a task passes, in a few array operations. False sends
    the task to the checks that name what is wrong."""
    return target.size > 0 and bool(_values_pass(law, objective.space == "log", inputs, target, np.zeros(1, int))[0])


def _values_pass(law: kernels.Law, log_space: bool, inputs, target, starts) -> np.ndarray:
    """`_check_values`' checks for tasks whose points are concatenated (inputs [points, m], target
    [points]; each task's first point at `starts`, none empty): [tasks] bool. A sum is finite only
    when every term is; a NaN fails `min > 0`."""
    good = np.isfinite(np.add.reduceat(inputs.sum(axis=1) + target, starts))
    positive = _positive_columns(law)
    if positive:
        good &= np.minimum.reduceat(inputs[:, positive].min(axis=1), starts) > 0
    if log_space:
        good &= np.minimum.reduceat(target, starts) > 0
    return good


def plainly_valid(tasks: Sequence[Task]) -> np.ndarray:
    """`_plainly_valid` for many tasks at once: [tasks] bool. Tasks of one law and objective space
    are checked together over their concatenated points (~13 us a task one by one, the largest part
    of `prepare`). False, also for any task whose arrays are not plainly shaped, only means that
    `prepare` runs its own checks, which name what is wrong."""
    ok = np.zeros(len(tasks), bool)
    together: dict[tuple, list[tuple[int, np.ndarray, np.ndarray]]] = defaultdict(list)
    for index, task in enumerate(tasks):
        try:
            law = kernels.get(task.law)
        except ValueError:
            continue
        if not isinstance(task.objective, Objective):
            continue
        inputs, target = task.inputs, task.target
        if not (isinstance(inputs, np.ndarray) and isinstance(target, np.ndarray)):
            continue
        if inputs.ndim != 2 or inputs.shape[1] != len(law.inputs) or target.shape != inputs.shape[:1]:
            continue
        if not target.size:
            continue
        together[(law, task.objective.space == "log")].append((index, inputs, target))
    for (law, log_space), members in together.items():
        index = np.array([m[0] for m in members])
        inputs = np.concatenate([m[1] for m in members]).astype(np.float64, copy=False)
        target = np.concatenate([m[2] for m in members]).astype(np.float64, copy=False)
        starts = np.cumsum([0] + [m[2].shape[0] for m in members[:-1]])
        ok[index] = _values_pass(law, log_space, inputs, target, starts)
    return ok


def varpro_or_grid(law: kernels.Law, init, fallback: str = "grid"):
    """`init`, except that "varpro" falls back to `fallback` ("grid" or "screen") when the law has no
    linear structure (for jobs that run many laws with one init setting), or to the law's own number
    of random starts when it has one (`Law.random_starts`)."""
    if not (isinstance(init, str) and init == "varpro" and law.varpro is None):
        return init
    return law.random_starts or fallback


@functools.cache
def _grid_for(law: kernels.Law, free: tuple[int, ...]) -> np.ndarray:
    """The distinct grid starts over the free parameters, once per law."""
    starts = np.unique(law.grid_starts()[:, list(free)], axis=0)
    starts.flags.writeable = False
    return starts


@functools.cache
def _box_of(law: kernels.Law, free: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each free parameter's random-start box: the range of its grid values (no grid product is
    built), widened around a single value."""
    axes = [law.init_grid[law.param_names[i]] for i in free]
    low = np.array([min(a) for a in axes], dtype=np.float64)
    high = np.array([max(a) for a in axes], dtype=np.float64)
    spread = np.where(high > low, 0.0, 0.5 * np.maximum(np.abs(low), 1.0))
    return low - spread, high + spread


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a counter-based hash whose
    outputs pass as independent uniform draws."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def random_starts(law: kernels.Law, free: tuple[int, ...], seeds, count: int) -> np.ndarray:
    """`count` starts per seed, uniform in the law's start box: [len(seeds), count, n_free].

    Draw k of a task is a hash of (seed, k), so a task gets the same starts alone or in any batch,
    and a whole group's starts take a few array operations (a generator per task cost ~50 us)."""
    low, high = _box_of(law, free)
    seeds = np.array([int(seed) % (1 << 64) for seed in seeds], dtype=np.uint64)
    counter = np.arange(1, count * len(free) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _splitmix64(_splitmix64(seeds)[:, None] + counter * _GOLDEN)
    uniform = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return low + uniform.reshape(seeds.size, count, len(free)) * (high - low)


def resolve_starts(law: kernels.Law, init, free: tuple[int, ...], seed: int) -> tuple[str, np.ndarray | None]:
    """(init kind, starts [restarts, n_free] (for "screen" and "draws", the candidates) or None for varpro)."""
    kind, starts = _init_kind(law, init, free)
    if isinstance(starts, int):
        return kind, random_starts(law, free, [seed], starts)[0]
    return kind, starts


# init="screen" on a law whose default starts are random draws screens this many uniform candidates
# per start (kind "draws": each start the best of its own block of draws): on the clipped-exponential
# plateaus of ScaleBench's laws a basin that ~1 in 100 uniform starts reaches is reached 2-8x as often.
SCREEN_DRAWS = 16


def _init_kind(law: kernels.Law, init, free: tuple[int, ...]) -> tuple[str, np.ndarray | int | None]:
    """(init kind, starts [restarts, n_free], or the number of random starts (or of random candidates
    to screen), or None for varpro)."""
    if isinstance(init, str) and init == "grid" and law.random_starts:
        init = law.random_starts  # the law's default start set is random draws in its box
    if isinstance(init, str):
        if init == "screen" and law.random_starts:
            return "draws", SCREEN_DRAWS * law.random_starts  # uniform candidates, drawn at packing
        if init in ("grid", "screen"):
            return init, _grid_for(law, free)
        if init == "varpro":
            if law.varpro is None:
                raise ValueError(f"law {law.name!r} has no linear structure: init='varpro' is not available")
            if len(free) != law.n_params:
                raise ValueError("init='varpro' fits every parameter; it cannot be combined with fixed=")
            return "varpro", None
        raise ValueError(f"init must be 'grid', 'screen', 'varpro', an int or an array of starts, got {init!r}")
    if isinstance(init, int | np.integer):
        if init < 1:
            raise ValueError(f"init: number of random starts must be >= 1, got {init}")
        return "random", int(init)
    starts = np.asarray(init, dtype=np.float64)
    if starts.ndim == 1:
        starts = starts[None, :]
    if starts.ndim != 2 or starts.shape[1] not in (len(free), law.n_params):
        raise ValueError(
            f"init: explicit starts must be [restarts, {len(free)}] (free params) or [restarts, {law.n_params}], "
            f"got shape {starts.shape}"
        )
    if starts.shape[1] == law.n_params and len(free) != law.n_params:
        starts = starts[:, list(free)]
    if not np.isfinite(starts).all():
        raise ValueError("init: explicit starts contain NaN/inf")
    return "explicit", starts


def prepare(index: int, task: Task, valid: bool = False) -> Prepared:
    """Validate one task. Raises ValueError (bad configuration) or TaskError (bad data).
    valid: the task's values are known to pass the checks (`plainly_valid`)."""
    law = kernels.get(task.law)
    objective = task.objective
    if not isinstance(objective, Objective):
        raise ValueError(f"objective must be an Objective, got {type(objective).__name__}")
    inputs = np.asarray(task.inputs, dtype=np.float64)
    if inputs.ndim == 1:
        inputs = inputs[:, None]
    target = np.asarray(task.target, dtype=np.float64).reshape(-1)
    if inputs.ndim != 2 or inputs.shape[1] != len(law.inputs):
        raise ValueError(
            f"law {law.name!r} reads {len(law.inputs)} input column(s) {law.inputs}; got inputs of shape {inputs.shape}"
        )
    if inputs.shape[0] != target.shape[0]:
        raise ValueError(f"inputs have {inputs.shape[0]} rows but target has {target.shape[0]}")
    fixed = dict(task.fixed or {})
    unknown = sorted(set(fixed) - set(law.param_names))
    if unknown:
        raise ValueError(
            f"fixed: unknown parameter(s) {unknown} for law {law.name!r}; its parameters are {law.param_names}"
        )
    free = tuple(i for i, name in enumerate(law.param_names) if name not in fixed)
    if not free:
        raise ValueError("fixed: every parameter is fixed, nothing to fit")
    theta_fixed = np.array([float(fixed.get(name, 0.0)) for name in law.param_names])
    init_kind, starts = _init_kind(law, task.init, free)
    n_random = 0
    if isinstance(starts, int):  # random starts, or candidates to screen, drawn per group
        starts, n_random = None, starts

    if not (valid or _plainly_valid(law, objective, inputs, target)):  # the named checks only when needed
        for column, name in enumerate(law.inputs):
            _check_values(f"input {name!r}", inputs[:, column], positive=name in law.positive_inputs)
        _check_values("target", target, positive=objective.space == "log")
    if task.weights is None:
        weights = np.ones_like(target)
    else:
        weights = np.asarray(task.weights, dtype=np.float64).reshape(-1)
        if weights.shape != target.shape:
            raise ValueError(f"weights have {weights.shape[0]} rows but target has {target.shape[0]}")
        _check_values("weights", weights, positive=False)
        if (weights < 0).any():
            raise TaskError(Status.INVALID_INPUT, "weights: must be >= 0")
    if target.shape[0] < len(free):
        raise TaskError(
            Status.TOO_FEW_POINTS,
            f"too few points: {target.shape[0]} point(s) for {len(free)} free parameter(s) of law {law.name!r}",
        )
    return Prepared(index, task, law, inputs, target, weights, free, theta_fixed, init_kind, starts, n_random)


def bucket_size(n_points: int) -> int:
    """Pad length for a task of `n_points`: multiples of 8 up to 64, of 16 up to 256, then half
    octaves (1 or 1.5 x a power of two), so few programs get compiled while padding stays small
    where most tasks are (tens to hundreds of points). Every padded point costs a lane-point a
    step: 24-point tasks padded to 32 ran a third slower."""
    n = max(int(n_points), 1)
    if n <= 64:
        return -(-n // 8) * 8
    if n <= 256:
        return -(-n // 16) * 16
    power = power_of_two_at_least(n)
    return power * 3 // 4 if n <= power * 3 // 4 else power


@dataclasses.dataclass(frozen=True)
class GroupKey:
    """What tasks must share to be solved by one compiled program (besides their padded shape)."""

    law: kernels.Law
    objective: Objective
    free: tuple[int, ...]
    # "varpro" (starts from the scan), "screen" (best grid starts), "draws" (best of blocks of random
    # draws) or "starts" (as given)
    init_kind: str
    n_restarts: int  # restarts solved per task
    tables: bool  # summed over tables of distinct inputs


@dataclasses.dataclass(frozen=True)
class Group:
    """Tasks that share one compiled program and one padded shape."""

    key: GroupKey
    n_pad: int
    members: list[Prepared]
    grid: tuple[int, int] | None = None  # (rows, columns) of the padded tables when summed over them

    @property
    def law(self) -> kernels.Law:
        return self.key.law

    @property
    def objective(self) -> Objective:
        return self.key.objective

    @property
    def free(self) -> tuple[int, ...]:
        return self.key.free

    @property
    def init_kind(self) -> str:
        return self.key.init_kind

    @property
    def n_restarts(self) -> int:
        return self.key.n_restarts


# A separable law's group is summed over its tables of distinct inputs (`solvers.grid`) when they have
# at most GRID_CELLS_PER_POINT cells per padded point: a lane-cell costs ~0.5 ns on the 2-core CPU, a
# lane-point ~10 ns, and the per-value exponentials and margins add about as much as the cells.
GRID_CELLS_PER_POINT = 4


def summed_over_grid(law: kernels.Law, objective: Objective) -> bool:
    """Whether fits of `law` under `objective` can be summed over tables of distinct inputs: the law
    is separable and the loss is plain least squares on the raw target."""
    return (
        law.separable is not None
        and objective.loss == "squared"
        and objective.space == "raw"
        and objective.over_penalty == 1.0
    )


def table_size(n_values: int) -> int:
    """Padded length of a table's column axis: a power of two, at least 16. Each table shape is a
    compiled program (~1-3 s on the 2-core CPU) and a job's families have many checkpoint counts;
    a padded cell costs ~0.5 ns a lane-step, so octaves cost less than the compiles they save."""
    return max(16, power_of_two_at_least(n_values))


def table_rows(n_values: int) -> int:
    """Padded length of a table's row axis (model sizes): a power of two, at least 4."""
    return max(4, power_of_two_at_least(n_values))


# Lanes x padded points (or table cells) up to which buckets of one program are merged into one batch,
# and how much padded work that may add (padded / real).
MERGE_WORK = 1 << 21
MERGE_PADDING = 1.25
# Below this much padded work a merged batch costs less than a millisecond a step whatever its
# padding, far below the compiles (starts, pool, check: seconds) that a separate shape would cost.
MERGE_ANY_PADDING = 1 << 18


def _program_kind(init_kind: str) -> str:
    return init_kind if init_kind in ("varpro", "screen", "draws") else "starts"


def _table_rows(item: Prepared, n_pad: int) -> int:
    """Distinct values of input 0 when `item` is summed over its table of distinct inputs, else 0."""
    if not summed_over_grid(item.law, item.task.objective):
        return 0
    rows, columns = item.distinct[0].size, item.distinct[1].size
    return rows if table_rows(rows) * table_size(columns) <= GRID_CELLS_PER_POINT * n_pad else 0


def group(prepared: list[Prepared], varpro_starts: int, screen_starts: int = 8) -> list[Group]:
    """Tasks grouped by compiled program, each group padded to one shape: points bucketed by number
    (`bucket_size`) or, for fits summed over tables of distinct inputs, tables by rows and columns."""
    buckets: dict[tuple[GroupKey, int, int], list[Prepared]] = defaultdict(list)
    for item in prepared:
        kind = _program_kind(item.init_kind)
        if kind == "varpro":
            n_restarts = varpro_starts
        elif kind in ("screen", "draws"):
            n_restarts = min(screen_starts, item.n_starts)
        else:
            n_restarts = item.n_starts
        n_pad = bucket_size(item.n_points)
        rows = _table_rows(item, n_pad)
        # (rows, length): tables of `rows` x about `length` cells, or (0, padded points).
        shape = (table_rows(rows), table_size(item.distinct[1].size)) if rows else (0, n_pad)
        key = GroupKey(item.law, item.task.objective, item.free, kind, n_restarts, rows > 0)
        buckets[(key, *shape)].append(item)
    # Small buckets of the same program merge upwards (padded to the larger shape) while the merged
    # batch stays cheap and mostly real work: a compile costs seconds, a few million padded
    # lane-points a step cost milliseconds.
    merged: list[tuple[GroupKey, list[Prepared]]] = []
    open_group: dict[GroupKey, tuple[int, int, int, int]] = {}  # key -> (index in merged, real work, shape)
    order = sorted(
        buckets,
        key=lambda k: (
            k[0].law.name,
            str(k[0].objective),
            k[0].free,
            k[0].init_kind,
            k[0].n_restarts,
            k[0].tables,
            k[1],
            k[2],
        ),
    )
    for bucket in order:
        key, rows, length = bucket
        work = len(buckets[bucket]) * key.n_restarts * max(rows, 1) * length
        if key in open_group:
            index, own, group_rows, group_length = open_group[key]
            members = merged[index][1] + buckets[bucket]
            rows, length = max(rows, group_rows), max(length, group_length)
            padded = len(members) * key.n_restarts * max(rows, 1) * length
            if padded <= MERGE_WORK and (padded <= MERGE_PADDING * (own + work) or padded <= MERGE_ANY_PADDING):
                merged[index] = (key, members)
                open_group[key] = (index, own + work, rows, length)
                continue
            rows, length = bucket[1], bucket[2]
        # Too big to merge (or the first of its program): this bucket starts the next group.
        open_group[key] = (len(merged), work, rows, length)
        merged.append((key, buckets[bucket]))
    groups = []
    for key, members in merged:
        n_pad = max(bucket_size(item.n_points) for item in members)
        shape = None
        if key.tables:
            n_columns = max(item.distinct[1].size for item in members)
            shape = (table_rows(max(item.distinct[0].size for item in members)), table_size(n_columns))
        groups.append(Group(key, n_pad, members, shape))
    return groups


class Tables(eqx.Module):
    """Tasks' tables of distinct inputs (`solvers.problem.Grid`, before features), padded:
    row_point [tasks, rows] and column_point [tasks, columns] (a point at each distinct value, whose
    features give the table's; padding takes point 0), counts and mean [tasks, rows, columns],
    within [tasks]."""

    row_point: np.ndarray
    column_point: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    within: np.ndarray


class TaskBatch(eqx.Module):
    """Padded arrays of a batch of tasks (numpy on the host; the same record traced in programs).

    inputs [tasks, n_pad, n_inputs] (raw), target [tasks, n_pad] (logged for the log space),
    coeff [tasks, n_pad] (weights; 0 on padding), theta_fixed [tasks, n_params], tables or None.
    """

    inputs: np.ndarray
    target: np.ndarray
    coeff: np.ndarray
    theta_fixed: np.ndarray
    tables: Tables | None = None

    def points_only(self) -> TaskBatch:
        """The same tasks without their tables."""
        return TaskBatch(self.inputs, self.target, self.coeff, self.theta_fixed)

    def tables_only(self) -> TaskBatch:
        """The same tasks as fits summed over their tables see them: one pseudo-point per table row
        and column (the first point at that value, for its features) and the tables; targets and
        weights live in the tables. Its shape is the table's, whatever the tasks' point counts.
        inputs [tasks, rows + columns, n_inputs]."""
        tables = self.tables
        n_rows, n_columns = tables.row_point.shape[1], tables.column_point.shape[1]
        index = np.concatenate([tables.row_point, tables.column_point], axis=1)
        inputs = np.take_along_axis(np.asarray(self.inputs), index[..., None], axis=1)
        n_tasks = index.shape[0]
        spread = Tables(
            row_point=np.broadcast_to(np.arange(n_rows), (n_tasks, n_rows)).copy(),
            column_point=np.broadcast_to(n_rows + np.arange(n_columns), (n_tasks, n_columns)).copy(),
            counts=tables.counts,
            mean=tables.mean,
            within=tables.within,
        )
        return TaskBatch(inputs, np.zeros(index.shape), np.zeros(index.shape), self.theta_fixed, spread)

    def take(self, index: np.ndarray) -> TaskBatch:
        """The tasks at `index` (numpy)."""
        return jax.tree.map(lambda leaf: np.asarray(leaf)[index], self)


def pack(group: Group, members: list[Prepared]) -> TaskBatch:
    """Padded arrays for a group's tasks (`TaskBatch`). Padding repeats the first point (so the law
    stays finite there) with zero weight."""
    n_tasks, n_pad = len(members), group.n_pad
    n_inputs = len(group.law.inputs)
    inputs = np.empty((n_tasks, n_pad, n_inputs))
    target = np.empty((n_tasks, n_pad))
    coeff = np.zeros((n_tasks, n_pad))
    for row, item in enumerate(members):
        n = item.n_points
        inputs[row, :n] = item.inputs
        inputs[row, n:] = item.inputs[0]
        values = np.log(item.target) if group.objective.space == "log" else item.target
        target[row, :n] = values
        target[row, n:] = values[0]
        scale = 1.0 / n if group.objective.reduction == "mean" else 1.0
        coeff[row, :n] = item.weights * scale
    theta_fixed = np.stack([item.theta_fixed for item in members])
    tables = pack_tables(group.grid, members, coeff) if group.grid is not None else None
    return TaskBatch(inputs, target, coeff, theta_fixed, tables)


def pack_starts(group: Group, members: list[Prepared]) -> np.ndarray:
    """starts [tasks, restarts, n_free] as given or drawn (the whole grid to screen for "screen" and "draws")."""
    drawn = [row for row, item in enumerate(members) if item.starts is None]
    if not drawn:
        return np.stack([item.starts for item in members])
    first = members[drawn[0]]
    out = np.empty((len(members), first.n_random, len(first.free)))
    out[drawn] = random_starts(first.law, first.free, [members[row].task.seed for row in drawn], first.n_random)
    for row, item in enumerate(members):
        if item.starts is not None:
            out[row] = item.starts
    return out


def pack_tables(shape: tuple[int, int], members: list[Prepared], coeff: np.ndarray) -> Tables:
    """The members' `Tables`, padded to `shape`. coeff: the packed point weights [tasks, n_pad]."""
    n_rows, n_columns = shape
    n_tasks = len(members)
    out = {
        "row_point": np.zeros((n_tasks, n_rows), dtype=np.int64),
        "column_point": np.zeros((n_tasks, n_columns), dtype=np.int64),
        "counts": np.zeros((n_tasks, n_rows, n_columns)),
        "mean": np.zeros((n_tasks, n_rows, n_columns)),
        "within": np.zeros(n_tasks),
    }
    for row, item in enumerate(members):
        rows, columns, row_of, column_of = item.distinct
        n = item.n_points
        # The first point at each distinct value (np.unique's inverse, scattered backwards).
        out["row_point"][row, row_of[::-1]] = np.arange(n)[::-1]
        out["column_point"][row, column_of[::-1]] = np.arange(n)[::-1]
        cell = row_of * n_columns + column_of
        weight = coeff[row, :n]
        counts = np.bincount(cell, weights=weight, minlength=n_rows * n_columns)
        sums = np.bincount(cell, weights=weight * item.target, minlength=n_rows * n_columns)
        mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        out["counts"][row] = counts.reshape(n_rows, n_columns)
        out["mean"][row] = mean.reshape(n_rows, n_columns)
        out["within"][row] = np.sum(weight * (item.target - mean[cell]) ** 2)
    return Tables(**out)

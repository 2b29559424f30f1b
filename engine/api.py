"""Public entry points: `fit` (one task) and `fit_many` (thousands at once, one row per task)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from lawfit import kernels

from . import compiles, solvers
from .plan import Group, TaskError, group, pack, prepare, varpro_or_grid
from .progress import Progress
from .solvers.problem import Problem, Residuals
from .types import Objective, Status, Task, status_label

# Epoch/Hoffmann approach 3: Huber(1e-3) on log residuals, summed.
DEFAULT_OBJECTIVE = Objective()
DEFAULT_MAX_STEPS = {"lm": 10000, "lbfgs": 10000}


@functools.cache
def _program(law, objective, free, solver_name, solver_options, n_varpro, n_screen=0, grid=False):
    """Jitted pieces of one group's solve: `begin` (features, varpro starts or the best `n_screen` of
    the given starts, initial state) and `advance` (up to n steps of the driver loop). With `grid`,
    the solver sums over the tasks' tables of distinct inputs (`solvers.grid`)."""
    residuals = Residuals(law, objective, free)
    bounds = (
        {"lower": tuple(map(float, residuals.lower)), "upper": tuple(map(float, residuals.upper))}
        if residuals.bounded
        else {}
    )
    solver = solvers.make(solver_name, **bounds, **dict(solver_options))
    if grid:
        evaluate = solvers.GridEvaluator(law, free, hessian=solver.needs_hessian)
        objective_only = solvers.GridEvaluator(law, free, hessian=False)
    else:
        evaluate = solvers.Evaluator(law, objective, free, hessian=solver.needs_hessian)
        objective_only = solvers.Evaluator(law, objective, free, hessian=False)

    def begin(inputs, target, coeff, theta_fixed, starts, tables=None):
        feats = jax.vmap(law.features)(inputs)
        table = None
        if grid:
            # The table's features are those of a point at each distinct input value.
            table = solvers.Grid(
                rows=jnp.take_along_axis(feats[:, :, 0], tables["row_point"], axis=1),
                columns=jnp.take_along_axis(feats[:, :, 1], tables["column_point"], axis=1),
                counts=tables["counts"],
                mean=tables["mean"],
                within=tables["within"],
            )
        problems = Problem(feats, target, coeff, theta_fixed, table)
        if starts is None:
            starts, _ = jax.vmap(lambda p: solvers.varpro_starts(law, objective, p, n_varpro))(problems)
        elif n_screen:
            # One pass over the points at every grid start; the solver runs from the best few only.
            f = objective_only(starts, problems)["f"]
            order = jnp.argsort(jnp.where(jnp.isfinite(f), f, jnp.inf), axis=1)[:, :n_screen]
            starts = jnp.take_along_axis(starts, order[..., None], axis=1)
        return solvers.loop.start(solver, evaluate, starts, problems), problems

    def advance(state, problems, n_steps):
        return solvers.loop.advance(solver, evaluate, state, problems, n_steps)

    return jax.jit(begin), jax.jit(advance)


# Share of the kernel's memory-map limit (vm.max_map_count) at which compiled programs are dropped
# (checked after a chunk; a chunk compiles at most a few dozen programs, each ~100 mappings: three per
# compiled kernel, measured as 32k mappings for the 259 programs of the cold Hitchhiker 16-start grid).
MAPS_RELEASE_FRACTION = 0.9


@functools.cache
def _max_map_count() -> int | None:
    """The kernel's per-process limit on memory mappings (Linux); None elsewhere."""
    try:
        with open("/proc/sys/vm/max_map_count") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return None


# Seconds between two reads of /proc/self/maps (a read costs ~10 ms once the count is in the
# tens of thousands, more than a small group's solve).
MAPS_CHECK_SECONDS = 2.0
_maps_checked = [-np.inf]


def _maps_near_limit() -> bool:
    """Whether this process's memory mappings approach the kernel's limit. Every program the CPU
    backend compiles holds ~100 mappings of code until it is dropped; a long job over many batch
    shapes (a bootstrap study) otherwise reaches the limit and LLVM fails with "Cannot allocate
    memory". Read at most every MAPS_CHECK_SECONDS. Linux only; elsewhere False."""
    limit = _max_map_count()
    now = time.monotonic()
    if limit is None or now - _maps_checked[0] < MAPS_CHECK_SECONDS:
        return False
    _maps_checked[0] = now
    try:
        with open("/proc/self/maps", "rb") as maps:
            return maps.read().count(b"\n") > MAPS_RELEASE_FRACTION * limit
    except OSError:
        return False


def release_programs() -> None:
    """Drop every compiled program (the persistent compile cache, when on, reloads them cheaply)."""
    _program.cache_clear()
    _conditioning.cache_clear()
    jax.clear_caches()
    compiles.LEDGER.clear()


# Lanes x padded points up to which a compacted batch may give every lane its own copy of its task's
# data (`compact_plan`). Per-lane data costs memory traffic (a lane-point 2-3x dearer once it leaves
# the cache), but on the Hitchhiker 16-start grid larger caps ran faster (2^15: 3.8 s, 2^22: 2.3 s):
# the lanes saved outweigh it. 2^22 is the default chunk size, so in practice there is no cap.
SINGLE_LANE_POINTS = 1 << 22
# What a single lane costs against a lane in a task row (`compact_plan`) when summing over tables of
# distinct inputs: a lane with its own table does matrix-vector products and streams its table
# from memory. Measured on the Hitchhiker 16-start grid (GPT-3, 8 x 1536 tables): 25-48 us a
# lane-step alone against 12.5 us in rows of 16 restarts.
GRID_SINGLE_LANE_COST = 3.0
# A batch is compacted when its running lanes fit a batch of at most NUM/DEN of its size.
COMPACT_SHRINK_NUM, COMPACT_SHRINK_DEN = 3, 4
# Lanes x padded points per solver step below which finished lanes are not compacted away.
COMPACT_MIN_WORK = 1 << 14
COMPACT_MODES = ("auto", "always")


@dataclasses.dataclass(frozen=True)
class Staging:
    """How a batch is driven (`_run_stages`).

    max_steps: solver steps per lane at most; stage_steps: steps between checks for finished lanes;
    compact: "auto" moves to a smaller batch shape not compiled yet only when the steps it saves pay
    for its compile (`compiles.Ledger.worth`), "always" whenever the batch shrinks by a quarter (for
    a job run again and again in one process, whose shapes are all compiled); later_batches: batches
    of the same group still to come (a shape bought now serves them too).
    """

    max_steps: int
    stage_steps: int
    compact: str = "auto"
    later_batches: int = 0


# Keys of `plan.pack_tables` in a packed chunk (present when the group is summed over its tables).
TABLE_KEYS = ("row_point", "column_point", "counts", "mean", "within")


def _pad_rows(value, axis: int, extra: int):
    """`value` with `extra` copies of its last entry along `axis` (numpy or device arrays)."""
    xp = jnp if isinstance(value, jax.Array) else np
    last = xp.take(value, xp.asarray([value.shape[axis] - 1] * extra), axis=axis)
    return xp.concatenate([value, last], axis=axis)


def _stage(advance, state, problems, n_steps: int):
    """(state after up to `n_steps` steps, flat mask of its running lanes), computed (blocking)."""
    state = advance(state, problems, n_steps)
    return state, np.asarray(state.status).reshape(-1) == Status.RUNNING


def _run_stages(begin, advance, packed, staging: Staging, n_restarts: int, pad_restarts: bool, n_tasks: int = 0):
    """Drive the loop in stages; between stages, once the running lanes fit a batch of at most 3/4
    of the current size (`compact_plan`), done lanes leave, so a few slow restarts do not make every
    lane keep computing. A smaller shape not compiled yet must be worth its compile first
    (`compiles.Ledger.worth`).

    Returns numpy arrays over the original [tasks, restarts] (theta, objective, status,
    iterations, evaluations) and the device problems as `begin` built them (with the `n_tasks`
    padding).

    n_restarts: restarts per task that `begin` makes; pad_restarts: whether they are the explicit
    starts in `packed` (which may then gain padding copies, `solvers.loop.lane_padding`); n_tasks:
    tasks to pad the batch to (repeating the last), so that a group's chunks share one shape.
    """
    n_real, n_tasks_wanted = packed["target"].shape[0], n_tasks
    extra_tasks = max(n_tasks - n_real, 0)
    alias_tasks, extra_restarts = solvers.loop.lane_padding(n_real + extra_tasks, n_restarts, pad_restarts)
    extra_tasks += alias_tasks
    if extra_tasks:
        packed = {key: _pad_rows(value, 0, extra_tasks) for key, value in packed.items()}
    if extra_restarts:
        packed = packed | {"starts": _pad_rows(packed["starts"], 1, extra_restarts)}
    tables = {key: packed[key] for key in TABLE_KEYS if key in packed} or None
    state, problems = begin(
        packed["inputs"], packed["target"], packed["coeff"], packed["theta_fixed"], packed.get("starts"), tables
    )
    first_problems = problems
    n_tasks, n_restarts = state.status.shape
    n_pad = packed["target"].shape[1]
    out = {
        "theta": np.zeros((n_tasks * n_restarts,) + state.theta.shape[2:]),
        "objective": np.zeros(n_tasks * n_restarts),
        "status": np.zeros(n_tasks * n_restarts, dtype=np.int64),
        "iterations": np.zeros(n_tasks * n_restarts, dtype=np.int64),
        "evaluations": np.zeros(n_tasks * n_restarts, dtype=np.int64),
    }
    origin = np.arange(n_tasks * n_restarts)  # original flat lane of each current lane; -1 = padding

    def write_back(state, mask):
        # Read to the host first: reshaping device arrays compiles a program per shape.
        leaves = {"theta": state.theta, "objective": state.f, "status": state.status}
        leaves |= {"iterations": state.n_steps, "evaluations": state.n_evals}
        for key, values in leaves.items():
            values = np.asarray(values)
            out[key][origin[mask]] = values.reshape((-1,) + values.shape[2:])[mask]

    ledger = compiles.LEDGER
    problem_shapes = compiles.shapes(problems)
    group_key = (advance, tuple(shape[1:] for shape in problem_shapes))
    single_cost = solvers.loop.SINGLE_LANE_COST if problems.grid is None else GRID_SINGLE_LANE_COST
    lane_seconds = None  # measured seconds per lane-step at the current shape (None until one is warm)
    max_steps, stage_steps = staging.max_steps, staging.stage_steps
    steps = 0
    while True:
        n = min(stage_steps, max_steps - steps)
        lanes = state.status.size
        state_shapes = compiles.shapes(state)
        key = ("advance", advance, state_shapes, problem_shapes)
        warm = ledger.known(key)
        expected = lane_seconds * lanes * n if lane_seconds else 0.0
        (state, running), elapsed = ledger.timed(
            "advance", key, _stage, advance, state, problems, n, compute_seconds=expected
        )
        if warm:
            lane_seconds = elapsed / (lanes * n)
        steps += n
        if steps >= max_steps or not running.any():
            break
        # Compacting pays only on big batches: each new shape costs a compile (or a cache load).
        if running.size * n_pad < COMPACT_MIN_WORK:
            continue
        single = SINGLE_LANE_POINTS // n_pad
        index, tasks = solvers.loop.compact_plan(
            running.reshape(state.status.shape), max_single_lanes=single, single_lane_cost=single_cost
        )
        if index.size * COMPACT_SHRINK_DEN > running.size * COMPACT_SHRINK_NUM:
            continue
        height, width = index.shape
        new_problem_shapes = tuple((height,) + shape[1:] for shape in problem_shapes)
        gather_key = ("gather", state_shapes, problem_shapes, index.shape)
        needed = {
            ("advance", advance, tuple((height, width) + s[2:] for s in state_shapes), new_problem_shapes): "advance"
        }
        on_host = solvers.loop.gathers_on_host(state)  # then the gather compiles nothing
        if not on_host:
            needed[gather_key] = "gather"
        if staging.compact == "auto":
            # A lane's cost changes when the batch changes between task rows and single lanes.
            layout = single_cost if width == 1 < state.status.shape[1] else 1.0
            layout /= single_cost if state.status.shape[1] == 1 < width else 1.0
            saved = (lane_seconds or 0.0) * (lanes - index.size * layout)
            # As many steps again as so far, in this batch and in each later one of the group.
            steps_left = min(steps, max_steps - steps) * (1 + staging.later_batches)
            if not ledger.worth(group_key, needed, saved, steps_left, stage_steps):
                continue
        write_back(state, ~running & (origin >= 0))
        if on_host:
            state, problems = solvers.loop.compact(state, problems, index, tasks)
        else:
            compacted, _ = ledger.timed("gather", gather_key, solvers.loop.compact, state, problems, index, tasks)
            state, problems = compacted
        problem_shapes = new_problem_shapes
        origin = np.where(index >= 0, origin[np.maximum(index, 0)], -1).reshape(-1)
    write_back(solvers.loop.finish(state), origin >= 0)
    shape, real = (n_tasks, n_restarts), (slice(n_real), slice(n_restarts - extra_restarts))
    out = {key: value.reshape(shape + value.shape[1:])[real] for key, value in out.items()}
    return out, jax.tree.map(lambda leaf: leaf[: max(n_real, n_tasks_wanted)], first_problems)


# log10 condition number of the column-scaled J^T J beyond which a converged fit is reported ill-conditioned:
# a parameter combination then moves the residuals by less than ~1e-7 of what the others do.
UNDETERMINED_LOG10_COND = 14.0
# A parameter whose unit change moves every prediction by less than this (relative) is not determined by
# the data: its term has vanished over the data range (a coefficient ~0, an exponent so large or a
# coefficient so small that the term is nil), so it could take any value. Column scaling hides this.
UNDETERMINED_SENSITIVITY = 1e-6


@functools.cache
def _conditioning(law, objective, free):
    """Per task at its best point: log10 condition number of the column-scaled J^T J, and each free
    parameter's sensitivity max_i |d pred_i / d theta_j| / |pred_i| (d log pred for log-space fits)."""
    residuals = Residuals(law, objective, free)

    def one(theta, problem):
        _, jac = residuals.value_and_jacobian(theta, problem)
        hess = jac.T @ jac
        scale = jnp.sqrt(jnp.maximum(jnp.diag(hess), 1e-300))
        eig = jnp.linalg.eigvalsh(hess / scale[:, None] / scale[None, :])
        log10_cond = jnp.log10(jnp.maximum(eig[-1], 1e-300) / jnp.maximum(eig[0], 1e-300))

        def prediction(th):
            full = residuals.full(th, problem)
            if objective.space == "log":
                return law.log_predict(full, problem.feats)
            return jnp.log(jnp.abs(law.predict(full, problem.feats)))

        sens = jnp.abs(jax.jacfwd(prediction)(theta))  # [n_points, n_free]
        sens = jnp.max(jnp.where((problem.coeff > 0)[:, None], sens, 0.0), axis=0)
        return log10_cond, jnp.where(jnp.isfinite(sens), sens, 0.0)

    return jax.jit(jax.vmap(one))


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """Per-task solve output (numpy), before it becomes a row."""

    theta: np.ndarray  # [restarts, n_free]
    objective: np.ndarray  # [restarts]
    status: np.ndarray  # [restarts]
    iterations: np.ndarray
    evaluations: np.ndarray
    log10_cond: float
    sensitivity: np.ndarray  # [n_free] at the best restart


def _run_on_devices(
    begin, advance, packed, staging: Staging, devices, n_restarts: int, explicit_starts: bool, n_tasks: int = 0
):
    """`_run_stages` with the batch split over local devices, one host thread driving each.

    Tasks are split when there are at least as many as devices, else the explicit restarts (one task
    with a 4500-start grid) when `explicit_starts`; each part compacts on its own, so lanes stop
    independently. n_restarts: restarts per task solved (the explicit starts', or the varpro or
    screening picks); n_tasks: tasks to pad a single device's batch to (`_run_stages`).
    """
    starts = packed.get("starts")
    if len(devices) > 1 and packed["target"].shape[0] >= len(devices):
        axis = "tasks"
        parts = [
            {key: value[index] for key, value in packed.items()}
            for index in np.array_split(np.arange(packed["target"].shape[0]), len(devices))
        ]
    elif explicit_starts and len(devices) > 1 and starts is not None and starts.shape[1] >= len(devices):
        axis = "restarts"
        parts = [
            packed | {"starts": starts[:, index]} for index in np.array_split(np.arange(starts.shape[1]), len(devices))
        ]
    else:
        return _run_stages(begin, advance, packed, staging, n_restarts, explicit_starts, n_tasks)

    def run(part, device):
        placed = {key: jax.device_put(value, device) for key, value in part.items()}
        restarts = part["starts"].shape[1] if explicit_starts else n_restarts
        return _run_stages(begin, advance, placed, staging, restarts, explicit_starts)

    with concurrent.futures.ThreadPoolExecutor(len(devices)) as pool:
        results = list(pool.map(run, parts, devices))
    join = 0 if axis == "tasks" else 1
    out = {key: np.concatenate([r[0][key] for r in results], axis=join) for key in results[0][0]}
    if axis == "tasks":
        problems = jax.tree.map(
            lambda *leaves: np.concatenate([np.asarray(x) for x in leaves]), *[r[1] for r in results]
        )
    else:
        problems = results[0][1]
    return out, problems


def _solve_group(grp: Group, solver: str, options, staging: Staging, n_varpro: int, chunk_lanes: int, bar=None):
    n_screen = grp.n_restarts if grp.init_kind == "screen" else 0
    grid = grp.grid is not None
    begin, advance = _program(grp.law, grp.objective, grp.free, solver, options, n_varpro, n_screen, grid)
    conditioning = _conditioning(grp.law, grp.objective, grp.free)
    devices = jax.local_devices()
    # Screening evaluates every grid start once: size chunks for that pass.
    width = grp.members[0].starts.shape[0] if n_screen else grp.n_restarts
    per_chunk = max(1, len(devices) * chunk_lanes // (width * grp.n_pad))
    # Chunks of sizes differing by at most one, the smaller ones padded: one batch shape to compile.
    chunks = np.array_split(np.arange(len(grp.members)), -(-len(grp.members) // per_chunk))
    per_chunk = len(chunks[0])
    outcomes = []
    for number, chunk in enumerate(chunks):
        members = [grp.members[index] for index in chunk]
        packed = pack(grp, members)
        explicit = grp.init_kind not in ("varpro", "screen")
        later = dataclasses.replace(staging, later_batches=len(chunks) - 1 - number)
        out, problems = _run_on_devices(begin, advance, packed, later, devices, grp.n_restarts, explicit, per_chunk)
        if bar is not None:
            bar.update(len(members))
        ranked = np.where(np.isfinite(out["objective"]), out["objective"], np.inf)
        best = np.argmin(ranked, axis=1)
        best_theta = out["theta"][np.arange(len(members)), best]
        # `problems` keeps the chunk's padding tasks (one shape for every chunk); so does best_theta.
        n_problems = jax.tree.leaves(problems)[0].shape[0]
        best_theta = _pad_rows(best_theta, 0, n_problems - len(members)) if n_problems > len(members) else best_theta
        cond, sensitivity = (np.asarray(x)[: len(members)] for x in conditioning(best_theta, problems))
        if _maps_near_limit():
            release_programs()
            begin, advance = _program(grp.law, grp.objective, grp.free, solver, options, n_varpro, n_screen, grid)
            conditioning = _conditioning(grp.law, grp.objective, grp.free)
        for row in range(len(members)):
            outcomes.append(
                _Outcome(
                    out["theta"][row],
                    out["objective"][row],
                    out["status"][row],
                    out["iterations"][row],
                    out["evaluations"][row],
                    float(cond[row]),
                    sensitivity[row],
                )
            )
    return outcomes


def _row(
    item,
    outcome: _Outcome | None,
    *,
    solver: str,
    at_best_rtol: float,
    keep_restarts: bool,
    error: str | None = None,
    status: Status | None = None,
) -> dict[str, Any]:
    task = item.task if hasattr(item, "task") else item
    law = kernels.get(task.law)
    row: dict[str, Any] = {str(k): v for k, v in task.labels.items()}
    row |= {"task_hash": task.key(), "law": law.name, "n_points": int(np.asarray(task.target).size)}
    from . import __version__

    provenance = {
        "solver": solver,
        "objective_spec": task.objective.describe() if isinstance(task.objective, Objective) else str(task.objective),
        "init": task.init if isinstance(task.init, str) else ("random" if isinstance(task.init, int) else "explicit"),
        "seed": task.seed,
        "data_hash": task.data_hash(),
        "lawfit_version": __version__,
        "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
        "device": jax.devices()[0].platform,
    }
    if outcome is None:
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
            "message": error,
            "params": None,
        }
        return row | provenance
    objective = np.where(np.isfinite(outcome.objective), outcome.objective, np.inf)
    best = int(np.argmin(objective))
    best_value = float(objective[best])
    theta = np.array(item.theta_fixed, dtype=np.float64)
    theta[list(item.free)] = outcome.theta[best]
    code = Status(int(outcome.status[best]))
    message = None
    if not np.isfinite(best_value):
        code = Status.NON_FINITE
    elif code == Status.CONVERGED:
        free_theta = outcome.theta[best]
        lower = np.asarray(law.lower)[list(item.free)]
        upper = np.asarray(law.upper)[list(item.free)]
        tol = 1e-9 * (1 + np.abs(free_theta))
        loose = [law.param_names[item.free[j]] for j in np.flatnonzero(outcome.sensitivity < UNDETERMINED_SENSITIVITY)]
        if np.any(np.abs(free_theta - lower) <= tol) or np.any(np.abs(free_theta - upper) <= tol):
            code = Status.BOUND_HIT
        elif loose or not outcome.log10_cond < UNDETERMINED_LOG10_COND:
            # The optimum is flat along some direction: the data do not determine every parameter, so the
            # numbers are not to be trusted (and a better optimum may lie elsewhere).
            code = Status.ILL_CONDITIONED
            message = (
                f"not determined by the data: {', '.join(loose)} (a unit change moves the fit by "
                f"< {UNDETERMINED_SENSITIVITY:g})"
                if loose
                else f"ill-conditioned optimum (log10 cond {outcome.log10_cond:.1f})"
            )
    n_at_best = int(np.sum(objective <= best_value * (1 + at_best_rtol) + 1e-300)) if np.isfinite(best_value) else 0
    row |= law.natural(theta) if np.isfinite(best_value) else {}
    row |= {
        "objective": best_value if np.isfinite(best_value) else None,
        "status": code.label,
        "status_code": int(code),
        "iterations": int(outcome.iterations[best]),
        "evaluations": int(outcome.evaluations.sum()),
        "best_restart": best,
        "n_restarts": int(objective.size),
        "n_at_best": n_at_best,
        "log10_cond": outcome.log10_cond if np.isfinite(outcome.log10_cond) else None,
        "message": message,
        "params": theta.tolist(),
    }
    if keep_restarts:
        row |= {
            "restart_objective": [float(v) if np.isfinite(v) else None for v in outcome.objective],
            "restart_status": [status_label(c) for c in outcome.status],
            "restart_iterations": outcome.iterations.astype(int).tolist(),
            "restart_params": outcome.theta.tolist(),
        }
    return row | provenance


def fit_many(
    tasks: Sequence[Task] | Any,
    *,
    law: str | Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
    group_by: Sequence[str] = (),
    objective: Objective | str = DEFAULT_OBJECTIVE,
    init: Any = "varpro",
    solver: str = "lm",
    max_steps: int | None = None,
    varpro_starts: int = 8,
    screen_starts: int = 8,
    keep_restarts: bool = False,
    at_best_rtol: float = 1e-6,
    chunk_lanes: int = 1 << 22,
    stage_steps: int = 8,
    compact: str = "auto",
    solver_options: Mapping[str, Any] | None = None,
    progress: bool | Progress | None = None,
) -> pl.DataFrame:
    """Fit every task; one result row per task, in the order given.

    Tasks sharing a law, objective, free-parameter set and number of restarts are solved by one
    compiled program over `[tasks, restarts]` lanes. Tasks whose data are unusable get a row with
    status `invalid-input` / `too-few-points` and a message; they never stop the others. A bad
    configuration (unknown law or parameter, malformed starts) raises ValueError naming the task.

    varpro_starts: nonlinear starts taken from the variable-projection scan (init="varpro").
    screen_starts: with init="screen", the objective is evaluated at every grid start and the solver
        runs from the best `screen_starts` of them.
    keep_restarts: add list columns with every restart's objective, status, iterations and params.
    at_best_rtol: a restart counts towards `n_at_best` when its objective <= best * (1 + rtol).
    chunk_lanes: cap on tasks x restarts x padded points solved in one device call.
    stage_steps: solver steps between checks for finished lanes (which then leave the batch).
    compact: "auto" moves finished lanes out into a smaller batch shape not compiled yet only when
        the steps it saves in this job pay for its compile; "always" whenever the batch shrinks by a
        quarter (fastest when the same job runs again and again in one process).
    progress: a progress bar (fits done, fits/s, ETA) on stderr; None = only on a terminal for >= 100 tasks;
        a `Progress` to advance (a longer job's bar), which is left open.

    `tasks` may also be a table (Polars, Arrow, pandas or a dict of columns): then every law in `law` is
    fitted to every group of rows (`group_by`), with `columns` mapping law inputs and "value" to column
    names, `objective` and `init` for all of them (laws without a linear structure start from their grid
    when init is "varpro"); the rows carry the law and the group labels.
    """
    if not isinstance(tasks, Sequence) or (tasks and not isinstance(tasks[0], Task)):
        if law is None:
            raise ValueError("fit_many on a table needs law= (a law name or a list of them)")
        mapping = dict(columns or {})
        target = mapping.pop("value", "value")
        laws = [law] if isinstance(law, str | kernels.Law) else list(law)
        tasks = [
            task
            for name in laws
            for task in tasks_from_frame(
                tasks,
                name,
                columns=mapping,
                target=target,
                group_by=group_by,
                objective=objective,
                init=varpro_or_grid(kernels.get(name), init),
            )
        ]
    if solver not in solvers.SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {sorted(solvers.SOLVERS)}")
    if varpro_starts < 1:
        raise ValueError(f"varpro_starts must be >= 1, got {varpro_starts}")
    if screen_starts < 1:
        raise ValueError(f"screen_starts must be >= 1, got {screen_starts}")
    if compact not in COMPACT_MODES:
        raise ValueError(f"compact must be one of {COMPACT_MODES}, got {compact!r}")
    staging = Staging(int(max_steps or DEFAULT_MAX_STEPS[solver]), stage_steps, compact)
    options = tuple(sorted((solver_options or {}).items()))
    rows: list[dict[str, Any] | None] = [None] * len(tasks)
    prepared = []
    for index, task in enumerate(tasks):
        try:
            prepared.append(prepare(index, task))
        except TaskError as err:
            rows[index] = _row(
                task,
                None,
                solver=solver,
                at_best_rtol=at_best_rtol,
                keep_restarts=keep_restarts,
                error=str(err),
                status=err.status,
            )
        except ValueError as err:
            raise ValueError(f"task {index} ({dict(task.labels) or task.law_name}): {err}") from None
    own_bar = not isinstance(progress, Progress)
    bar = Progress(len(prepared), progress) if own_bar else progress
    if not own_bar:
        bar.update(len(tasks) - len(prepared))
    for grp in group(prepared, varpro_starts, screen_starts):
        outcomes = _solve_group(grp, solver, options, staging, varpro_starts, chunk_lanes, bar)
        for item, outcome in zip(grp.members, outcomes, strict=True):
            rows[item.index] = _row(
                item, outcome, solver=solver, at_best_rtol=at_best_rtol, keep_restarts=keep_restarts
            )
    if own_bar:
        bar.close()
    return pl.from_dicts(rows, infer_schema_length=None)


def _as_frame(data) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, Mapping):
        return pl.DataFrame({k: np.asarray(v) for k, v in data.items()})
    try:
        return pl.from_pandas(data) if hasattr(data, "to_numpy") and hasattr(data, "iloc") else pl.from_arrow(data)
    except Exception as err:  # noqa: BLE001 - report what was passed
        raise TypeError(
            f"data must be a Polars/pandas DataFrame, an Arrow table or a dict of arrays, got {type(data).__name__}"
        ) from err


def tasks_from_frame(
    data,
    law: str | kernels.Law,
    *,
    columns: Mapping[str, str] | None = None,
    target: str = "value",
    weights: str | None = None,
    group_by: Sequence[str] = (),
    objective: Objective | str = DEFAULT_OBJECTIVE,
    init: Any = "grid",
    fixed: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[Task]:
    """One task per group of rows of `data` (all rows when `group_by` is empty).

    columns: maps the law's input names to column names (e.g. {"params": "N", "tokens": "D"});
    `flops` falls back to 6 * params * tokens when the column is absent.
    """
    frame = _as_frame(data)
    law = kernels.get(law)
    objective = Objective.parse(objective)
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(law.inputs))
    if unknown:
        raise ValueError(f"columns: {unknown} are not inputs of law {law.name!r} (it reads {law.inputs})")
    needed = {name: columns.get(name, name) for name in law.inputs}
    if "flops" in needed and needed["flops"] not in frame.columns and {"params", "tokens"} <= set(frame.columns):
        frame = frame.with_columns((6.0 * pl.col("params") * pl.col("tokens")).alias(needed["flops"]))
    for role, column in list(needed.items()) + [("target", target)] + ([("weights", weights)] if weights else []):
        if column not in frame.columns:
            raise ValueError(
                f"missing column {column!r} (needed as {role} by law {law.name!r}); available columns: {frame.columns}"
            )
    for column in group_by:
        if column not in frame.columns:
            raise ValueError(f"group_by: missing column {column!r}; available columns: {frame.columns}")
    parts = frame.partition_by(list(group_by), as_dict=True, maintain_order=True) if group_by else {(): frame}
    tasks = []
    for key, part in parts.items():
        key = key if isinstance(key, tuple) else (key,)
        tasks.append(
            Task(
                law=law,
                inputs=part.select([pl.col(c).cast(pl.Float64) for c in needed.values()]).to_numpy(),
                target=part[target].cast(pl.Float64).to_numpy(),
                weights=part[weights].cast(pl.Float64).to_numpy() if weights else None,
                objective=objective,
                init=init,
                fixed=fixed,
                labels=dict(zip(group_by, key, strict=True)),
                seed=seed,
            )
        )
    return tasks


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The outcome of `fit`: best parameters (fit space and derived), objective, status, and the
    full result row (`row`) including every restart (`restarts`)."""

    law: kernels.Law
    params: dict[str, float]
    theta: np.ndarray
    objective: float | None
    status: str
    row: pl.DataFrame
    restarts: pl.DataFrame

    def predict(self, inputs) -> np.ndarray:
        """Predictions at raw inputs [n_points, len(law.inputs)]."""
        raw = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
        if raw.shape[1] != len(self.law.inputs) and raw.shape[0] == len(self.law.inputs):
            raw = raw.T
        return np.asarray(self.law.predict_raw(jnp.asarray(self.theta), jnp.asarray(raw)))


def fit(
    law: str | kernels.Law,
    data,
    *,
    columns: Mapping[str, str] | None = None,
    target: str = "value",
    weights: str | None = None,
    objective: Objective | str = DEFAULT_OBJECTIVE,
    init: Any = "grid",
    fixed: Mapping[str, float] | None = None,
    solver: str = "lm",
    max_steps: int | None = None,
    varpro_starts: int = 8,
    seed: int = 0,
) -> FitResult:
    """Fit one law to one point set (a DataFrame, Arrow table or dict of columns).

    Raises ValueError naming the column/parameter when the data cannot be fitted.
    """
    (task,) = tasks_from_frame(
        data,
        law,
        columns=columns,
        target=target,
        weights=weights,
        objective=objective,
        init=init,
        fixed=fixed,
        seed=seed,
    )
    try:
        prepare(0, task)
    except TaskError as err:
        raise ValueError(str(err)) from None
    row = fit_many([task], solver=solver, max_steps=max_steps, varpro_starts=varpro_starts, keep_restarts=True)
    record = row.row(0, named=True)
    law = kernels.get(law)
    restarts = pl.DataFrame(
        {
            "restart": np.arange(record["n_restarts"]),
            "objective": record["restart_objective"],
            "status": record["restart_status"],
            "iterations": record["restart_iterations"],
        }
    ).with_columns(pl.Series("params", record["restart_params"]))
    theta = np.asarray(record["params"], dtype=np.float64)
    return FitResult(
        law=law,
        params=law.natural(theta),
        theta=theta,
        objective=record["objective"],
        status=record["status"],
        row=row,
        restarts=restarts,
    )

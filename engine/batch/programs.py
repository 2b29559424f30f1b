"""Compiled programs, one per declared shape, compiled ahead of time.

Every program of a job is named by a frozen key (`PoolKey`, `StartKey`, `CheckKey`) whose fields
fix its shapes, exported with `jax.export` and compiled from the export before it first runs:
compile time is measured as what it is (`STATS`), and a program is never retraced for new data.
Compiled programs are kept per key for the life of the process (`clear` drops them). With
`lawfit.cli.enable_compile_cache`, a fresh process loads the exports from disk (`archive`) instead
of tracing, and the persistent XLA cache turns their compiles into loads.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

try:
    from jax import shard_map
except ImportError:  # jax < 0.7
    from jax.experimental.shard_map import shard_map

from lawfit import kernels

from .. import solvers
from ..plan import Tables, TaskBatch
from ..solvers.evaluate import STACKED_WIDTH
from ..solvers.linalg import point_sum
from ..solvers.problem import Grid, Problem, Residuals
from ..types import Objective
from . import archive


@dataclasses.dataclass(frozen=True)
class Fit:
    """What every program of a group shares: the law, the objective and the fitted parameters."""

    law: kernels.Law
    objective: Objective
    free: tuple[int, ...]
    n_pad: int  # padded points per task
    table: tuple[int, int] | None = None  # (rows, columns) when summed over tables of distinct inputs

    @property
    def residuals(self) -> Residuals:
        return Residuals(self.law, self.objective, self.free)


@dataclasses.dataclass(frozen=True)
class PoolKey:
    """A lane pool: `rows` task slots of `width` restart lanes each, stepped by `solver`."""

    fit: Fit
    solver: str
    solver_options: tuple[tuple[str, object], ...]
    rows: int
    width: int


@dataclasses.dataclass(frozen=True)
class StartKey:
    """Starts for a batch of `n_tasks` tasks: "varpro" (the best `n_starts` of the variable-projection
    scan), "screen" (the best `n_starts` of `n_grid` given starts, by objective) or "draws" (one start
    from each of `n_starts` blocks of `n_grid` random draws, `_best_of_blocks`)."""

    fit: Fit
    kind: str
    n_tasks: int
    n_starts: int
    n_grid: int = 0


@dataclasses.dataclass(frozen=True)
class CheckKey:
    """Conditioning of `n_tasks` tasks at their best point (`rows.diagnose`)."""

    fit: Fit
    n_tasks: int


class CompileStats:
    """Programs compiled in this process and the seconds spent (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0  # compiled (or loaded from the XLA cache) in this process
        self.loaded = 0  # of those, loaded from the program archive instead of traced
        self.seconds = 0.0

    def add(self, seconds: float, loaded: bool = False) -> None:
        with self._lock:
            self.count += 1
            self.loaded += int(loaded)
            self.seconds += seconds


STATS = CompileStats()
_LOCK = threading.Lock()
_COMPILED: dict[object, Program] = {}
# One lock a key: a program asked for while it is being loaded or compiled (a prefetch) is waited
# for, not made twice.
_KEY_LOCKS: collections.defaultdict[object, threading.Lock] = collections.defaultdict(threading.Lock)
# Loads archived programs in the background (`prefetch`). Deserializing an executable runs mostly
# outside the GIL (~45 ms for a Chinchilla pool program on the 2-core CPU).
_LOADER = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="lawfit-load")
_LOADING: set[concurrent.futures.Future] = set()
# Per pool program not compiled yet: the lane-point-steps that job tails in this process spent in
# larger pools while it would have held them (`pool.Pool` compiles it once this is about a compile).
TAIL_RENT: collections.Counter = collections.Counter()


def clear() -> None:
    """Drop every compiled program of this process (and the tails' rent towards new ones), once
    the background loads under way (`prefetch`) are done."""
    with _LOCK:
        loading = list(_LOADING)
    concurrent.futures.wait(loading)
    with _LOCK:
        _COMPILED.clear()
        TAIL_RENT.clear()
    jax.clear_caches()


def is_compiled(key) -> bool:
    """Whether the program `key` is compiled in this process already."""
    with _LOCK:
        return key in _COMPILED


def is_ready(key: PoolKey) -> bool:
    """Whether the pool program `key` should cost no compile: compiled in this process, or archived
    (loading takes ~0.05-0.4 s)."""
    return is_compiled(key) or archive.has(archive.fingerprint(key, lane_devices(key)))


def _spec(leaf, sharding=None) -> jax.ShapeDtypeStruct:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)
    return jax.ShapeDtypeStruct(np.shape(leaf), np.asarray(leaf).dtype, sharding=sharding)


class Program:
    """A compiled program over the flat leaves of its arguments: it places its host arguments as
    it was compiled for and gives back the output's pytree."""

    def __init__(self, compiled: jax.stages.Compiled, output_tree):
        self.compiled, self.output_tree = compiled, output_tree
        self.shardings = compiled.input_shardings[0]

    def __call__(self, *args):
        # The compiled call places host arrays itself (by `shardings`) and takes its own outputs
        # as they are; an explicit `jax.device_put` first cost ~15 % of a bulk job's host thread.
        return jax.tree.unflatten(self.output_tree, self.compiled(*jax.tree.leaves(args)))

    def place(self, args: tuple, position: int):
        """`args[position]` on the devices as this program takes it (host arrays copied once; a call
        given the placed value copies nothing for it). `args`: the call's arguments, or ones of the
        same structure up to `position`."""
        first = sum(len(jax.tree.leaves(arg)) for arg in args[:position])
        leaves, tree = jax.tree.flatten(args[position])
        return jax.tree.unflatten(tree, jax.device_put(tuple(leaves), self.shardings[first : first + len(leaves)]))


def _compiled(key, build, devices: tuple | None = None):
    """The program for `key`, compiled on first use: `build()` gives (function, example args, an
    example of the output's structure). The function is exported (`jax.export`) over flat leaves
    and compiled from the export, archived on disk or loaded from there (`archive`): a program
    compiles from the same StableHLO whether it was traced in this process or loaded, and its
    compiled executable, once archived, is loaded as it is."""
    with _LOCK:
        program = _COMPILED.get(key)
        key_lock = _KEY_LOCKS[key]
    if program is not None:
        return program
    with key_lock:
        with _LOCK:
            program = _COMPILED.get(key)
        if program is None:
            program = _make(key, build, devices)
            with _LOCK:
                _COMPILED[key] = program
        return program


def _make(key, build, devices: tuple | None) -> Program:
    start = time.perf_counter()
    fn, args, output = build()
    specs = jax.tree.map(lambda leaf: leaf if isinstance(leaf, jax.ShapeDtypeStruct) else _spec(leaf), args)
    leaves, tree = jax.tree.flatten(specs)
    output_tree = jax.tree.structure(output)
    devices = devices or tuple(jax.local_devices()[:1])
    name = archive.fingerprint(key, devices)
    compiled = archive.load_executable(name, devices)
    loaded = compiled is not None
    if not loaded:
        exported = archive.load(name)
        loaded = exported is not None
        if not loaded:

            def flat(*flat_args):
                out = fn(*jax.tree.unflatten(tree, flat_args))
                if jax.tree.structure(out) != output_tree:
                    raise TypeError(f"program {type(key).__name__}: output is not shaped like its declared example")
                return tuple(jax.tree.leaves(out))

            exported = jax.export.export(jax.jit(flat))(*leaves)
            archive.save(name, exported)
        compiled = archive.compile_and_keep(name, archive.lower(name, exported, leaves), devices)
    STATS.add(time.perf_counter() - start, loaded)
    return Program(compiled, output_tree)


def prefetch(keys) -> list[concurrent.futures.Future]:
    """Load the archived ones of `keys` (programs a job is about to run) in background threads,
    so that their loads overlap the host's work and the device's first calls: a fresh process's
    Epoch grid needs three. Keys neither archived nor compiled are left to compile when asked for
    (a job's tail may never need its smaller pool). Gives the loads' futures."""
    make = {PoolKey: pool, StartKey: starts, CheckKey: check}
    loads = []
    for key in keys:
        if not is_compiled(key) and archive.has_executable(archive.fingerprint(key, program_devices(key))):
            load = _LOADER.submit(make[type(key)], key)
            with _LOCK:
                _LOADING.add(load)
            load.add_done_callback(_LOADING.discard)
            loads.append(load)
    return loads


def batch_spec(fit: Fit, n_tasks: int) -> TaskBatch:
    """Zero arrays shaped like a `TaskBatch` of `n_tasks` tasks of `fit` (the programs' inputs)."""
    law = fit.law
    tables = None
    if fit.table is not None:
        rows, columns = fit.table
        tables = Tables(
            row_point=np.zeros((n_tasks, rows), np.int64),
            column_point=np.zeros((n_tasks, columns), np.int64),
            counts=np.zeros((n_tasks, rows, columns)),
            mean=np.zeros((n_tasks, rows, columns)),
            within=np.zeros(n_tasks),
        )
    return TaskBatch(
        inputs=np.ones((n_tasks, fit.n_pad, len(law.inputs))),
        target=np.zeros((n_tasks, fit.n_pad)),
        coeff=np.zeros((n_tasks, fit.n_pad)),
        theta_fixed=np.zeros((n_tasks, law.n_params)),
        tables=tables,
    )


def problems(law: kernels.Law, batch: TaskBatch) -> Problem:
    """The solvers' view of a batch (traced): features from the raw inputs, tables' features."""
    feats = jax.vmap(law.features)(batch.inputs)
    grid = None
    if batch.tables is not None:
        tables = batch.tables
        # The table's features are those of a point at each distinct input value.
        grid = Grid(
            rows=jnp.take_along_axis(feats[:, :, 0], tables.row_point, axis=1),
            columns=jnp.take_along_axis(feats[:, :, 1], tables.column_point, axis=1),
            counts=tables.counts,
            mean=tables.mean,
            within=tables.within,
        )
    return Problem(feats, batch.target, batch.coeff, batch.theta_fixed, grid)


def evaluator(fit: Fit, hessian: bool, width: int = 1):
    """The evaluator of `fit`'s programs; `width`: restarts a pool row holds (wide rows over long
    series, shared by a task's raced restarts, take the stacked pass, `solvers.evaluate.STACKED_WIDTH`)."""
    if fit.table is not None:
        return solvers.GridEvaluator(fit.law, fit.free, hessian=hessian, width=width)
    stacked = width >= STACKED_WIDTH
    return solvers.Evaluator(fit.law, fit.objective, fit.free, hessian=hessian, stacked=stacked)


@functools.cache
def solver_for(fit: Fit, name: str, options: tuple[tuple[str, object], ...]) -> solvers.LaneSolver:
    residuals = fit.residuals
    bounds = (
        {"lower": tuple(map(float, residuals.lower)), "upper": tuple(map(float, residuals.upper))}
        if residuals.bounded
        else {}
    )
    return solvers.make(name, **bounds, **dict(options))


def empty_state(key: PoolKey):
    """The pool's state with every lane idle (numpy)."""
    return jax.tree.map(np.copy, _empty_state(key))


@functools.cache
def _empty_state(key: PoolKey):
    fit = key.fit
    solver = solver_for(fit, key.solver, key.solver_options)
    return solvers.loop.empty_state(solver, (key.rows, key.width, len(fit.free)))


# Fewest lanes a device steps in a pool whose lanes are stepped all together (point sums, one
# restart a row). Compiled with `archive.CPU_OPTIONS`, XLA's code for loops of 32 or fewer lanes
# rounded some lanes differently from the same loops over 64 or more (24 of 300 restarts of a
# 3-parameter law ended elsewhere); pools of 64 to 4,096 lanes a device agree to the last bit.
MIN_DEVICE_LANES = 64


def min_together_lanes(min_lanes: int) -> int:
    """Fewest lanes of a pool whose lanes step all together: `min_lanes` (`Tuning.min_lanes`), and
    MIN_DEVICE_LANES on every device."""
    return max(min_lanes, MIN_DEVICE_LANES * len(jax.local_devices()))


def lane_devices(key: PoolKey) -> tuple:
    """The local devices a pool's lanes are split over: all of them when its rows (or, for a
    single row, its lanes) divide evenly, else the first. Each device steps its share of the
    lanes with its own loop; a lane computes the same arithmetic on any device."""
    devices = tuple(jax.local_devices())
    if len(devices) > 1 and (key.rows % len(devices) == 0 or (key.rows == 1 and key.width % len(devices) == 0)):
        return devices
    return devices[:1]


def task_devices(n_tasks: int) -> tuple:
    """The local devices a per-task program (starts, checks) splits its tasks over: all of them
    when they divide `n_tasks`, else the first. Its tasks run one after another on each device,
    so a task's arithmetic does not depend on the split."""
    devices = tuple(jax.local_devices())
    return devices if n_tasks % len(devices) == 0 else devices[:1]


def program_devices(key) -> tuple:
    """The devices the program `key` runs on: a pool's `lane_devices`, a per-task program's
    `task_devices`."""
    return lane_devices(key) if isinstance(key, PoolKey) else task_devices(key.n_tasks)


def _shard_map(fn, mesh, in_specs, out_specs):
    # Each device runs its own copy of the loop on its lanes: no communication between them.
    try:
        return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    except TypeError:  # older jax names the check `check_rep`
        return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _split(fn, args, devices: tuple, in_specs, out_specs):
    """(fn, args) as `build` gives them for `devices`: as they are on one device, else `fn` mapped
    over the devices (`in_specs`, `out_specs`: how each argument and the output are split) and the
    arguments' specs placed accordingly."""
    if len(devices) == 1:
        return fn, args
    mesh = jax.sharding.Mesh(np.array(devices), ("lanes",))
    placed = tuple(
        jax.tree.map(lambda leaf, spec=spec: _spec(leaf, jax.sharding.NamedSharding(mesh, spec)), arg)
        for arg, spec in zip(args, in_specs, strict=True)
    )
    return _shard_map(fn, mesh, in_specs, out_specs), placed


def _per_task(key, fn, args, output):
    """The per-task program `fn(*args)` for `key`, its tasks (every argument's and output's leading
    axis) split over `task_devices`."""
    devices = program_devices(key)
    specs = tuple(P("lanes") for _ in args)
    return _compiled(key, lambda: (*_split(fn, args, devices, specs, P("lanes")), output), devices)


def pool(key: PoolKey):
    """(state, batch, refill mask [rows, width], refill theta [rows, width, n_free], n_steps,
    max_steps, pause_every) -> state: refill the masked lanes, then up to n_steps driver steps
    (`solvers.loop.advance`)."""
    fit = key.fit
    solver = solver_for(fit, key.solver, key.solver_options)
    evaluate = evaluator(fit, solver.needs_hessian, key.width)

    def step(state, batch, mask, theta, n_steps, max_steps, pause_every):
        state = solvers.loop.refill(solver, state, mask, theta)
        return solvers.loop.advance(solver, evaluate, state, problems(fit.law, batch), n_steps, max_steps, pause_every)

    def build():
        width = (key.rows, key.width)
        theta = np.zeros(width + (len(fit.free),))
        args = (
            empty_state(key),
            batch_spec(fit, key.rows),
            np.zeros(width, bool),
            theta,
            np.int32(0),
            np.int32(0),
            np.int32(0),
        )
        # Lanes split over the devices by rows, or by lanes when the pool is one wide row (whose
        # task data every device then holds).
        lanes = P("lanes") if key.rows > 1 else P(None, "lanes")
        rows = P("lanes") if key.rows > 1 else P()
        specs = (lanes, rows, lanes, lanes, P(), P(), P())
        return *_split(step, args, lane_devices(key), specs, lanes), args[0]

    return _compiled(key, build, program_devices(key))


def starts(key: StartKey):
    """varpro: (batch) -> starts [n_tasks, n_starts, n_free]; screen: (batch, grid [n_tasks, n_grid,
    n_free]) -> the best n_starts of the grid by objective."""
    fit = key.fit
    law, objective = fit.law, fit.objective
    batch = batch_spec(fit, key.n_tasks)
    if key.kind == "varpro":

        def varpro(batch):
            # One task after another, not vmapped: batched products round by the batch's size, and a
            # task's starts must not depend on which tasks share its batch (the same rows whatever
            # the chunking). Each task's scan is wide enough alone.
            found, _ = jax.lax.map(
                lambda p: solvers.varpro_starts(law, objective, p, key.n_starts), problems(law, batch)
            )
            return found

        return _per_task(key, varpro, (batch,), 0)
    objective_only = evaluator(fit, hessian=False)

    def screen(batch, grid):
        # One pass over the points at every grid start; the solver runs from the best few only.
        found = objective_only(grid, problems(law, batch))
        ranked = jnp.where(jnp.isfinite(found.f), found.f, jnp.inf)
        if key.kind == "draws":
            order = _best_of_blocks(ranked, found.grad, key.n_starts)
        else:
            order = jnp.argsort(ranked, axis=1)[:, : key.n_starts]
        return jnp.take_along_axis(grid, order[..., None], axis=1)

    grid = np.zeros((key.n_tasks, key.n_grid, len(fit.free)))
    return _per_task(key, screen, (batch, grid), 0)


def _best_of_blocks(ranked, grad, n_starts: int):
    """ranked [tasks, n_grid] (f, inf where not finite), grad [tasks, n_grid, n_free] -> the index of
    one candidate per block of consecutive draws [tasks, n_starts]: of those with the fewest
    parameters whose gradient is exactly zero, the lowest f. Blocks keep the starts as spread as the
    draws (the best n_starts overall all sat on one plateau of ScaleBench's vocab sl_4); a parameter
    with a zero gradient is one the solver cannot move from there (a clipped exponential, max(A, eps)
    at A < 0)."""
    n_tasks, n_grid = ranked.shape
    per = -(-n_grid // n_starts)
    pad = n_starts * per - n_grid  # the last block is short; its padding is never chosen
    usable = jnp.isfinite(ranked) & jnp.all(jnp.isfinite(grad), axis=-1)
    dead = jnp.where(usable, jnp.sum(grad == 0, axis=-1), grad.shape[-1] + 1)
    ranked = jnp.pad(ranked, ((0, 0), (0, pad)), constant_values=jnp.inf).reshape(n_tasks, n_starts, per)
    dead = jnp.pad(dead, ((0, 0), (0, pad)), constant_values=grad.shape[-1] + 2).reshape(n_tasks, n_starts, per)
    ranked = jnp.where(dead == jnp.min(dead, axis=2, keepdims=True), ranked, jnp.inf)
    order = jnp.argmin(ranked, axis=2) + per * jnp.arange(n_starts)[None, :]
    return jnp.minimum(order, n_grid - 1)


def check(key: CheckKey):
    """(batch, theta [n_tasks, n_free]) -> (J^T J at theta with its columns scaled to a unit diagonal
    [n_tasks, n_free, n_free], each free parameter's sensitivity max_i |d pred_i / d theta_j| /
    |pred_i| [n_tasks, n_free]; d log pred for log-space fits). `rows.conditioning` reads the first."""
    fit = key.fit
    law, objective = fit.law, fit.objective
    residuals = fit.residuals

    def one(theta, problem):
        _, jac = residuals.value_and_jacobian(theta, problem)
        hess = point_sum(lambda a, b: a @ b.T, jac.T, jac.T)  # in point order: the same whatever the padding
        scale = jnp.sqrt(jnp.maximum(jnp.diag(hess), 1e-300))

        def prediction(th):
            full = residuals.full(th, problem)
            if objective.space == "log":
                return law.log_predict(full, problem.feats)
            return jnp.log(jnp.abs(law.predict(full, problem.feats)))

        sens = jnp.abs(jax.jacfwd(prediction)(theta))  # [n_points, n_free]
        sens = jnp.max(jnp.where((problem.coeff > 0)[:, None], sens, 0.0), axis=0)
        return hess / scale[:, None] / scale[None, :], jnp.where(jnp.isfinite(sens), sens, 0.0)

    def diagnose(batch, theta):
        found = problems(law, batch)
        # One task after another (`jax.lax.map`), as for the starts: J^T J must not round by batch size.
        return jax.lax.map(
            lambda args: one(*args), (theta, Problem(found.feats, found.target, found.coeff, found.theta_fixed))
        )

    batch = batch_spec(dataclasses.replace(fit, table=None), key.n_tasks)
    theta = np.zeros((key.n_tasks, len(fit.free)))
    return _per_task(key, diagnose, (batch, theta), (0, 0))

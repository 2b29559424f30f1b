"""The one driver loop. A solver is four pure functions over its own per-lane state:

    init(theta, evaluation) -> state
    propose(state) -> trial theta
    update(state, trial, evaluation at trial) -> state
    terminate(state) -> bool

`advance` batches them over [tasks, restarts] lanes with `vmap`, evaluates every lane's trial in
one pass over the points (`Evaluator`), and runs a single `lax.while_loop` whose lanes stop
independently: a lane whose `terminate` says done keeps its state, and the loop ends when all are
done or after `n_steps`. The engine's runner calls `start`, `advance` (in stages, dropping
finished lanes in between with `compact_plan` / `compact`) and `finish`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..types import Status


def _per_lane(fn):
    return jax.vmap(jax.vmap(fn))


def start(solver, evaluate, theta0, problems):
    """Initial state for `theta0: [tasks, restarts, n_free]` (projected onto the bounds). No leaf is
    weakly typed, so a state gathered on the host (`compact`) has the types `advance` was compiled for."""
    theta0 = _per_lane(solver.project)(theta0)
    state = _per_lane(solver.init)(theta0, evaluate(theta0, problems))
    return jax.tree.map(lambda leaf: jax.lax.convert_element_type(leaf, leaf.dtype), state)


def advance(solver, evaluate, state, problems, n_steps):
    """Up to `n_steps` steps (a traced integer: no recompilation per value); done lanes stay put."""
    terminate = _per_lane(solver.terminate)
    points = evaluate.layout(problems, state.status.shape[1])  # once, outside the loop

    def cond(carry):
        state, n = carry
        return (n < n_steps) & jnp.any(~terminate(state))

    def body(carry):
        state, n = carry
        trial = _per_lane(solver.propose)(state)
        new = _per_lane(solver.update)(state, trial, evaluate(trial, problems, points))
        running = ~terminate(state)

        def keep_done(new_leaf, old_leaf):
            mask = running.reshape(running.shape + (1,) * (new_leaf.ndim - running.ndim))
            return jnp.where(mask, new_leaf, old_leaf)

        return jax.tree.map(keep_done, new, state), n + 1

    state, _ = jax.lax.while_loop(cond, body, (state, jnp.asarray(0)))
    return state


def finish(state):
    """Lanes still running get `Status.MAX_ITER`."""
    status = jnp.where(state.status == Status.RUNNING, Status.MAX_ITER, state.status)
    return eqx.tree_at(lambda s: s.status, state, status)


# Batches of a multiple of ALIAS_LANES lanes (4 KiB of float64) put every per-lane array at the same
# cache-set offset: on the 2-core CPU 2048, 2560 or 4096 lanes cost ~20 ns a lane and point, 2056,
# 2568 or 4104 lanes ~11 ns. Such batches get a padding task or a few padding restarts.
ALIAS_LANES = 512


def lane_padding(n_tasks: int, n_restarts: int, pad_restarts: bool = True) -> tuple[int, int]:
    """(extra tasks, extra restarts) that take n_tasks x n_restarts lanes off multiples of ALIAS_LANES."""
    if (n_tasks * n_restarts) % ALIAS_LANES == 0 and n_restarts % ALIAS_LANES:
        return 1, 0  # (t + 1) r = t r + r, and r is not a multiple
    if (n_tasks * n_restarts) % ALIAS_LANES == 0 and pad_restarts:
        # r a multiple: (t + dt)(r + 8) = 8 (t + dt) mod ALIAS_LANES, nonzero unless 64 | t + dt.
        return (1 if n_tasks % (ALIAS_LANES // 8) == 0 else 0), 8
    return 0, 0


def _ladder(n: int) -> int:
    """`n` rounded up to 8 or to 1 or 1.5 x a power of two (at most 50 % padding): a short ladder
    of batch heights, so few shapes are ever compiled (every one holds memory mappings of code)."""
    if n <= 8:
        return 8
    power = 1 << (n - 1).bit_length()
    return power * 3 // 4 if n <= power * 3 // 4 else power


# What a single lane (`[lanes, 1]`, with its own copy of its task's data) costs against a lane in a
# task row, by default (`compact_plan`).
SINGLE_LANE_COST = 1.25


def compact_plan(
    running: np.ndarray, min_restarts: int = 8, max_single_lanes: int = 0, single_lane_cost: float = SINGLE_LANE_COST
):
    """Where the running lanes of `running: [tasks, restarts]` go in a smaller batch.

    Task rows: tasks without a running lane leave; each kept task keeps its running restarts,
    padded to a power of two (at least `min_restarts`; multiples of 512 beyond 1024); the number of
    tasks is padded to a power of two too. Restarts stay the minor axis with the task's data shared.
    Single lanes (`[lanes, 1]`, each running lane with its own copy of its task's data), when that
    needs at most `max_single_lanes` lanes, and they cost less than the lanes of task rows at
    `single_lane_cost` times as much each: the tail of a batch, where a few slow restarts of many
    tasks would each hold `min_restarts` lanes. (Per-lane data costs memory traffic: on 2 CPU cores
    past ~2 MB of it, a lane-point costs 2-3x a shared one; the caller sets the cap and the cost.)
    Heights are kept off the aliasing lane counts (`lane_padding`).

    Returns (index [tasks', restarts'] of flat lanes to gather, or -1 for padding; task of each row).
    """
    n_tasks, n_restarts = running.shape
    counts = running.sum(axis=1)
    kept = np.flatnonzero(counts)
    widest = int(counts.max())
    width = max(min_restarts, 1 << (widest - 1).bit_length()) if widest <= 1024 else -(-widest // 512) * 512
    height = 1 << (len(kept) - 1).bit_length()
    single = _ladder(int(counts.sum()))
    if single <= max_single_lanes and single * single_lane_cost <= height * width:
        lanes = np.flatnonzero(running.reshape(-1))
        single += lane_padding(single, 1)[0]
        index = np.full((single, 1), -1)
        index[: lanes.size, 0] = lanes
        return index, np.concatenate([lanes // n_restarts, np.full(single - lanes.size, lanes[0] // n_restarts)])
    extra_tasks, extra_restarts = lane_padding(height, width)
    height, width = height + extra_tasks, width + extra_restarts
    index = np.full((height, width), -1)
    for row, task in enumerate(kept):
        lanes = task * n_restarts + np.flatnonzero(running[task])
        index[row, : lanes.size] = lanes
    tasks = np.concatenate([kept, np.full(height - kept.size, kept[0])])
    return index, tasks


def gathers_on_host(state) -> bool:
    """Whether `compact` gathers `state` with numpy (on the CPU backend: no program to compile per
    pair of batch shapes, and the arrays are in host memory already)."""
    return all(device.platform == "cpu" for device in jax.tree.leaves(state)[0].devices())


def compact(state, problems, index: np.ndarray, tasks: np.ndarray):
    """Gather `state` lanes by `index` ([tasks', restarts'] flat lane indices, -1 = padding, which
    repeats a lane of the same row marked done) and `problems` by `tasks`."""
    padding = index < 0
    # Fill padding with a lane of the same task (its first running one) or any kept lane.
    filled = np.where(padding, np.where(index[:, :1] >= 0, index[:, :1], index[0, 0]), index)
    if gathers_on_host(state):
        device = next(iter(jax.tree.leaves(state)[0].devices()))
        lanes = jax.tree.map(lambda leaf: np.asarray(leaf).reshape((-1,) + leaf.shape[2:])[filled], state)
        lanes = eqx.tree_at(lambda s: s.status, lanes, np.where(padding, Status.CONVERGED, lanes.status))
        return jax.device_put((lanes, jax.tree.map(lambda leaf: np.asarray(leaf)[tasks], problems)), device)
    return _gather(state, problems, jnp.asarray(filled), jnp.asarray(padding), jnp.asarray(tasks))


@jax.jit
def _gather(state, problems, filled, padding, tasks):
    # One compiled program per (batch, compacted batch) shape pair. Done op by op, every leaf's gather,
    # reshape and select was its own executable: a long bootstrap job compiled thousands of them, and
    # the CPU backend's code mappings ran into the kernel's map limit (LLVM "Cannot allocate memory").
    flat = jax.tree.map(lambda leaf: leaf.reshape((-1,) + leaf.shape[2:]), state)
    lanes = jax.tree.map(lambda leaf: leaf[filled], flat)
    status = jnp.where(padding, Status.CONVERGED, lanes.status)
    lanes = eqx.tree_at(lambda s: s.status, lanes, status)
    return lanes, jax.tree.map(lambda leaf: leaf[tasks], problems)

"""The one driver loop. A solver (`base.LaneSolver`) is four pure functions over ONE lane:

    init(theta, evaluation) -> state
    propose(state) -> trial theta
    update(state, trial, evaluation at trial) -> state
    terminate(state) -> bool

`advance` batches them over a pool of [rows, width] lanes with `vmap`, evaluates every lane's
trial in one pass over the points (`Evaluator`), and runs a single `lax.while_loop` whose lanes stop
independently: a done lane keeps its state, and the loop ends when no lane is active or after
`n_steps`. Laws of many parameters step in fixed groups of lanes instead, each group evaluated
over all its points at once and skipped when none of its lanes is active (`Evaluator.grouped`).
Lanes are refilled between calls (`refill`): a refilled lane is `Status.FRESH`, and its first step
evaluates its start and runs `init` instead of `update`, so a refill costs no extra pass.
The pool's shapes never change while a job runs (`lawfit.batch.pool` drives it).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..types import Status
from .base import Evaluation
from .evaluate import lane_groups


def _per_lane(fn):
    return jax.vmap(jax.vmap(fn))


def empty_state(solver, theta_shape: tuple[int, int, int]) -> object:
    """A pool state of idle lanes (numpy zeros, `Status.IDLE`) for `theta_shape` [rows, width, n_free]:
    the structure and dtypes `init` gives, found without compiling anything. `init` is traced for
    one lane on an evaluation's shapes, not the law's: tracing the evaluator cost ~0.07 s of a
    fresh process."""
    n_free, lanes = theta_shape[-1], theta_shape[:2]
    hess = jax.ShapeDtypeStruct((n_free, n_free), jnp.float64) if solver.needs_hessian else None
    scalar, vector = jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((n_free,), jnp.float64)
    shapes = jax.eval_shape(solver.init, vector, Evaluation(f=scalar, grad=vector, hess=hess))
    state = jax.tree.map(lambda s: np.zeros(lanes + s.shape, s.dtype), shapes)
    return eqx.tree_at(lambda s: s.status, state, np.full(lanes, Status.IDLE, shapes.status.dtype))


def refill(solver, state, mask, theta):
    """Lanes in `mask: [rows, width]` start over at `theta: [rows, width, n_free]` (projected)."""
    theta = _per_lane(solver.project)(theta)
    return eqx.tree_at(
        lambda s: (s.theta, s.status),
        state,
        (jnp.where(mask[..., None], theta, state.theta), jnp.where(mask, Status.FRESH, state.status)),
    )


def active(status):
    """Lanes still to step: running, or loaded and not evaluated yet."""
    return (status == Status.RUNNING) | (status == Status.FRESH)


def advance(solver, evaluate, state, problems, n_steps, max_steps, pause_every=0):
    """Up to `n_steps` driver steps (traced integers: no recompilation per value); done lanes stay
    put; a lane that reaches `max_steps` evaluations ends with `Status.MAX_ITER`; with
    `pause_every` > 0, a running lane whose evaluations reach a multiple of it stops as
    `Status.PAUSED` (a race checkpoint: the host resumes or prunes it)."""
    if evaluate.grouped:
        step = _grouped_step(solver, evaluate, problems, state.status.shape, max_steps, pause_every)
    else:
        points = evaluate.layout(problems, state.status.shape[1])  # once, outside the loop

        def step(state):
            trial = _trial(solver, state, _per_lane)
            evaluation = evaluate(trial, problems, points)
            return _finish(solver, state, trial, evaluation, max_steps, pause_every, _per_lane)

    def cond(carry):
        state, n = carry
        return (n < n_steps) & jnp.any(active(state.status))

    def body(carry):
        state, n = carry
        return step(state), n + 1

    state, _ = jax.lax.while_loop(cond, body, (state, jnp.asarray(0, dtype=jnp.int32)))
    return state


def _trial(solver, state, batch):
    """Each lane's point to evaluate: a fresh lane its start, the others their proposal."""
    fresh = state.status == Status.FRESH
    return jnp.where(fresh[..., None], state.theta, batch(solver.propose)(state))


def _finish(solver, state, trial, evaluation, max_steps, pause_every, batch):
    """The lanes' states after evaluating `trial`: a fresh lane runs `init`, the others `update`.
    Both are computed and selected per lane, so the evaluator is traced once (a separate first
    step doubled the program and its compile time). Lanes not active keep their state."""
    fresh = state.status == Status.FRESH
    started = batch(solver.init)(trial, evaluation)
    updated = batch(solver.update)(state, trial, evaluation)
    new = jax.tree.map(lambda a, b: _where_lanes(fresh, a, b), started, updated)
    # The batch's rare costly status test (`LaneSolver.settle`), only in steps that need it.
    unsettled = batch(solver.unsettled)(new) & active(state.status)
    new = jax.lax.cond(jnp.any(unsettled), batch(solver.settle), lambda s: s, new)
    spent = (new.status == Status.RUNNING) & (new.n_evals >= max_steps)
    checkpoint = (pause_every > 0) & (new.n_evals % jnp.maximum(pause_every, 1) == 0)
    status = jnp.where(spent, Status.MAX_ITER, new.status)
    status = jnp.where((status == Status.RUNNING) & checkpoint, Status.PAUSED, status)
    new = eqx.tree_at(lambda s: s.status, new, status)
    return jax.tree.map(lambda a, b: _where_lanes(active(state.status), a, b), new, state)


def _grouped_step(solver, evaluate, problems, shape: tuple[int, int], max_steps, pause_every):
    """A driver step in fixed groups of lanes (`evaluate.lanes`), one group after another; a group
    with no active lane is skipped, evaluation and solver update alike. In a pool's tail a few
    restarts of a wide row run on, and each step then costs their groups, not the pool. The same
    group size in every pool also keeps a lane's rounding the same wherever it runs."""
    rows, width = shape
    lanes = rows * width
    index = lane_groups(lanes, evaluate.group_size)  # [groups, size]
    task = index // width

    def to_groups(leaf):
        flat = leaf.reshape((lanes,) + leaf.shape[2:])
        flat = flat if index.size == lanes else flat[index.ravel()]
        return flat.reshape(index.shape + leaf.shape[2:])

    def from_groups(leaf):
        return leaf.reshape((index.size,) + leaf.shape[2:])[:lanes].reshape(shape + leaf.shape[2:])

    def run(group_state, group_task):
        trial = _trial(solver, group_state, jax.vmap)
        evaluation = evaluate.lanes(trial, group_task, problems)
        return _finish(solver, group_state, trial, evaluation, max_steps, pause_every, jax.vmap)

    def one(args):
        group_state, group_task = args
        live = jnp.any(active(group_state.status))
        return jax.lax.cond(live, run, lambda s, _: s, group_state, group_task)

    def step(state):
        return jax.tree.map(from_groups, jax.lax.map(one, (jax.tree.map(to_groups, state), task)))

    return step


def _where_lanes(mask, new_leaf, old_leaf):
    mask = mask.reshape(mask.shape + (1,) * (new_leaf.ndim - mask.ndim))
    return jnp.where(mask, new_leaf, old_leaf).astype(old_leaf.dtype)

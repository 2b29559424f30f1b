"""The one driver loop. A solver is four pure functions over its own per-lane state:

    init(theta, evaluation) -> state
    propose(state) -> trial theta
    update(state, trial, evaluation at trial) -> state
    terminate(state) -> bool

`advance` batches them over [tasks, restarts] lanes with `vmap`, evaluates every lane's trial in
one pass over the points (`Evaluator`), and runs a single `lax.while_loop` whose lanes stop
independently: a lane whose `terminate` says done keeps its state, and the loop ends when all are
done or after `n_steps`. `iterate` = `start` + `advance` + `finish` in one program; the engine's
runner calls the pieces itself so that it can drop finished lanes between stages (`compact`).
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
    """Initial state for `theta0: [tasks, restarts, n_free]` (projected onto the bounds)."""
    theta0 = _per_lane(solver.project)(theta0)
    return _per_lane(solver.init)(theta0, evaluate(theta0, problems))


def advance(solver, evaluate, state, problems, n_steps):
    """Up to `n_steps` steps (a traced integer: no recompilation per value); done lanes stay put."""
    terminate = _per_lane(solver.terminate)

    def cond(carry):
        state, n = carry
        return (n < n_steps) & jnp.any(~terminate(state))

    def body(carry):
        state, n = carry
        trial = _per_lane(solver.propose)(state)
        new = _per_lane(solver.update)(state, trial, evaluate(trial, problems))
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


def iterate(solver, evaluate, theta0, problems, max_steps: int):
    """Run `solver` from `theta0: [tasks, restarts, n_free]` on `problems` (leading [tasks]) in one
    program. Returns the final state (leading [tasks, restarts])."""
    state = start(solver, evaluate, theta0, problems)
    return finish(advance(solver, evaluate, state, problems, max_steps))


def compact(state, problems, keep: np.ndarray, size: int):
    """Gather lanes `keep` (flat indices into [tasks, restarts]) into a new batch of `size` tasks
    with one restart each (padded by repeating the first kept lane, marked done).

    Returns (state [size, 1, ...], problems [size, ...], task index of each kept lane).
    """
    n_restarts = state.status.shape[1]
    padded = np.concatenate([keep, np.full(size - keep.size, keep[0])])
    tasks = padded // n_restarts
    lanes = jax.tree.map(lambda leaf: leaf.reshape((-1, 1) + leaf.shape[2:])[padded], state)
    frozen = np.arange(size) >= keep.size
    status = jnp.where(frozen[:, None], Status.CONVERGED, lanes.status)
    lanes = eqx.tree_at(lambda s: s.status, lanes, status)
    return lanes, jax.tree.map(lambda leaf: leaf[tasks], problems), tasks

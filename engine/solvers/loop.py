"""The one driver loop. A solver is four pure functions over its own per-lane state:

    init(theta, evaluation) -> state
    propose(state) -> trial theta
    update(state, trial, evaluation at trial) -> state
    terminate(state) -> bool

`iterate` batches them over [tasks, restarts] lanes with `vmap`, evaluates every lane's trial in one
pass over the points (`Evaluator`), and runs a single `lax.while_loop` whose lanes stop
independently: a lane whose `terminate` says done keeps its state, and the loop ends when all are
done or after `max_steps`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..types import Status


def _per_lane(fn):
    return jax.vmap(jax.vmap(fn))


def iterate(solver, evaluate, theta0, problems, max_steps: int):
    """Run `solver` from `theta0: [tasks, restarts, n_free]` on `problems` (leading [tasks]).

    Returns the final state (leading [tasks, restarts]); lanes still running after `max_steps`
    get `Status.MAX_ITER`.
    """
    theta0 = _per_lane(solver.project)(theta0)
    state = _per_lane(solver.init)(theta0, evaluate(theta0, problems))
    terminate = _per_lane(solver.terminate)

    def cond(carry):
        state, n = carry
        return (n < max_steps) & jnp.any(~terminate(state))

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
    status = jnp.where(state.status == Status.RUNNING, Status.MAX_ITER, state.status)
    return eqx.tree_at(lambda s: s.status, state, status)

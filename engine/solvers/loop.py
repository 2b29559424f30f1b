"""The one driver loop: every solver is `init / step / terminate` over its own state pytree,
batched over [tasks, restarts] lanes and iterated by a single `lax.while_loop` whose lanes stop
independently (a lane whose `terminate` says done keeps its state; the loop ends when all are done
or after `max_steps`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..types import Status


def _per_lane(fn):
    # Inner vmap over restarts shares the task's data; outer vmap over tasks.
    return jax.vmap(jax.vmap(fn, in_axes=(0, None)), in_axes=(0, 0))


def iterate(solver, residuals, theta0, problems, max_steps: int):
    """Run `solver` from `theta0: [tasks, restarts, n_free]` on `problems` (leading [tasks]).

    Returns the final state (leading [tasks, restarts]); lanes still running at `max_steps`
    get `Status.MAX_ITER`.
    """
    init = _per_lane(lambda theta, problem: solver.init(residuals, theta, problem))
    step = _per_lane(lambda state, problem: solver.step(residuals, state, problem))
    terminate = jax.vmap(jax.vmap(solver.terminate))

    def cond(carry):
        state, n = carry
        return (n < max_steps) & jnp.any(~terminate(state))

    def body(carry):
        state, n = carry
        new = step(state, problems)
        running = ~terminate(state)

        def keep_done(new_leaf, old_leaf):
            mask = running.reshape(running.shape + (1,) * (new_leaf.ndim - running.ndim))
            return jnp.where(mask, new_leaf, old_leaf)

        return jax.tree.map(keep_done, new, state), n + 1

    state, _ = jax.lax.while_loop(cond, body, (init(theta0, problems), jnp.asarray(0)))
    status = jnp.where(state.status == Status.RUNNING, Status.MAX_ITER, state.status)
    return eqx.tree_at(lambda s: s.status, state, status)

"""L-BFGS with optax's `scale_by_lbfgs` for the direction and a per-lane weak-Wolfe line search.

Each step of the driver evaluates f and its gradient at ONE trial point per lane; the line search
is a small state machine (bracket [lo, hi], bisect or double) inside the state, so lanes advance
independently instead of waiting for the slowest line search in the batch.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ..types import Status

_TINY = 1e-300


class LBFGSState(eqx.Module):
    theta: jax.Array  # [n_free] accepted iterate
    f: jax.Array
    grad: jax.Array  # [n_free]
    direction: jax.Array  # [n_free]
    t: jax.Array  # trial step length
    lo: jax.Array
    hi: jax.Array
    ls_steps: jax.Array
    memory: optax.ScaleByLBFGSState
    n_steps: jax.Array  # accepted iterations
    n_evals: jax.Array
    status: jax.Array


class LBFGS(eqx.Module):
    memory_size: int = 10
    c1: float = 1e-4
    c2: float = 0.9
    ftol: float = 1e-13
    gtol: float = 1e-10
    max_line_search: int = 40

    def _transform(self):
        return optax.scale_by_lbfgs(memory_size=self.memory_size)

    def _direction(self, grad, memory, theta):
        transform = self._transform()
        update, new_memory = transform.update(grad, memory, theta)
        # Restart the memory when the result is not a descent direction (bad curvature pairs).
        fresh_update, fresh_memory = transform.update(grad, transform.init(theta), theta)
        descent = jnp.dot(update, grad) > 0
        update = jnp.where(descent, update, fresh_update)
        new_memory = jax.tree.map(lambda a, b: jnp.where(descent, a, b), new_memory, fresh_memory)
        return -update, new_memory

    def _scaled_grad(self, theta, grad, f):
        return jnp.max(jnp.abs(grad) * jnp.maximum(jnp.abs(theta), 1.0)) / jnp.maximum(jnp.abs(f), _TINY)

    def init(self, residuals, theta, problem) -> LBFGSState:
        theta = residuals.project(theta)
        f, grad = jax.value_and_grad(residuals.value)(theta, problem)
        direction, memory = self._direction(grad, self._transform().init(theta), theta)
        finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(grad))
        return LBFGSState(
            theta=theta, f=f, grad=grad, direction=direction, t=jnp.asarray(1.0), lo=jnp.asarray(0.0),
            hi=jnp.asarray(jnp.inf), ls_steps=jnp.asarray(0), memory=memory, n_steps=jnp.asarray(0),
            n_evals=jnp.asarray(1), status=jnp.where(finite, Status.RUNNING, Status.NON_FINITE),
        )

    def step(self, residuals, state: LBFGSState, problem) -> LBFGSState:
        trial = residuals.project(state.theta + state.t * state.direction)
        f_t, grad_t = jax.value_and_grad(residuals.value)(trial, problem)
        slope = jnp.dot(state.grad, state.direction)
        finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(grad_t))
        armijo = finite & (f_t <= state.f + self.c1 * state.t * slope)
        curvature = jnp.dot(grad_t, state.direction) >= self.c2 * slope
        give_up = state.ls_steps + 1 >= self.max_line_search
        accept = armijo & (curvature | give_up)

        # Line-search bookkeeping for a rejected trial.
        too_long = ~armijo
        hi = jnp.where(too_long, state.t, state.hi)
        lo = jnp.where(too_long, state.lo, state.t)
        t_next = jnp.where(jnp.isfinite(hi), 0.5 * (lo + hi), 2.0 * state.t)

        direction, memory = self._direction(grad_t, state.memory, trial)
        decrease = state.f - f_t
        scaled_grad = self._scaled_grad(trial, grad_t, f_t)
        converged = accept & (
            (decrease <= self.ftol * jnp.maximum(jnp.abs(f_t), _TINY)) | (scaled_grad <= self.gtol) | (f_t <= 1e-30)
        )
        stalled = ~accept & give_up
        status = jnp.where(
            converged,
            Status.CONVERGED,
            jnp.where(
                stalled,
                jnp.where(self._scaled_grad(state.theta, state.grad, state.f) <= 1e-3,
                          Status.CONVERGED, Status.ILL_CONDITIONED),
                Status.RUNNING,
            ),
        )

        def pick(on_accept, on_reject):
            return jax.tree.map(lambda a, b: jnp.where(accept, a, b), on_accept, on_reject)

        return LBFGSState(
            theta=jnp.where(accept, trial, state.theta),
            f=jnp.where(accept, f_t, state.f),
            grad=pick(grad_t, state.grad),
            direction=pick(direction, state.direction),
            t=jnp.where(accept, 1.0, t_next),
            lo=jnp.where(accept, 0.0, lo),
            hi=jnp.where(accept, jnp.inf, hi),
            ls_steps=jnp.where(accept, 0, state.ls_steps + 1),
            memory=pick(memory, state.memory),
            n_steps=state.n_steps + accept.astype(state.n_steps.dtype),
            n_evals=state.n_evals + 1,
            status=status,
        )

    def terminate(self, state: LBFGSState) -> jax.Array:
        return state.status != Status.RUNNING

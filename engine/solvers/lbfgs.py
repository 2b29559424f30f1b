"""L-BFGS: optax's `scale_by_lbfgs` gives the direction; a per-lane weak-Wolfe line search
(bracket [lo, hi]; bisect when the trial is too long, double when the curvature condition fails)
lives in the state, so every driver step costs ONE evaluation per lane and lanes advance
independently instead of waiting for the slowest line search in the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import equinox as eqx
import jax
import jax.numpy as jnp

from ..types import Status
from .base import Evaluation, LaneSolver
from .linalg import dot

if TYPE_CHECKING:
    import optax


def _lbfgs(memory_size: int):
    # optax is imported on first use: it adds ~0.07 s to every process, most of which never run L-BFGS.
    import optax

    return optax.scale_by_lbfgs(memory_size=memory_size)


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


class LBFGS(LaneSolver):
    memory_size: int = eqx.field(static=True, default=10)
    c1: float = eqx.field(static=True, default=1e-4)
    c2: float = eqx.field(static=True, default=0.9)
    ftol: float = eqx.field(static=True, default=1e-13)
    gtol: float = eqx.field(static=True, default=1e-10)
    max_line_search: int = eqx.field(static=True, default=40)

    needs_hessian = False
    max_steps = 10000

    def _direction(self, grad, memory, theta):
        transform = _lbfgs(self.memory_size)
        update, new_memory = transform.update(grad, memory, theta)
        # Restart the memory when it no longer gives a descent direction (bad curvature pairs).
        fresh_update, fresh_memory = transform.update(grad, transform.init(theta), theta)
        descent = dot(update, grad) > 0
        new_memory = jax.tree.map(lambda a, b: jnp.where(descent, a, b), new_memory, fresh_memory)
        return -jnp.where(descent, update, fresh_update), new_memory

    def init(self, theta, ev: Evaluation) -> LBFGSState:
        f, grad = ev.f, ev.grad
        memory = _lbfgs(self.memory_size).init(theta)
        direction, memory = self._direction(grad, memory, theta)
        finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(grad))
        return LBFGSState(
            theta=theta,
            f=f,
            grad=grad,
            direction=direction,
            t=jnp.asarray(1.0, dtype=theta.dtype),
            lo=jnp.asarray(0.0, dtype=theta.dtype),
            hi=jnp.asarray(jnp.inf, dtype=theta.dtype),
            ls_steps=jnp.asarray(0, dtype=int),
            memory=memory,
            n_steps=jnp.asarray(0, dtype=int),
            n_evals=jnp.asarray(1, dtype=int),
            status=jnp.where(finite, Status.RUNNING, Status.NON_FINITE).astype(int),
        )

    def propose(self, state: LBFGSState):
        return self.project(state.theta + state.t * state.direction)

    def update(self, state: LBFGSState, trial, ev: Evaluation) -> LBFGSState:
        f_t, grad_t = ev.f, ev.grad
        slope = dot(state.grad, state.direction)
        finite = jnp.isfinite(f_t) & jnp.all(jnp.isfinite(grad_t))
        armijo = finite & (f_t <= state.f + self.c1 * state.t * slope)
        curvature = dot(grad_t, state.direction) >= self.c2 * slope
        give_up = state.ls_steps + 1 >= self.max_line_search
        accept = armijo & (curvature | give_up)

        hi = jnp.where(armijo, state.hi, state.t)
        lo = jnp.where(armijo, state.t, state.lo)
        t_next = jnp.where(jnp.isfinite(hi), 0.5 * (lo + hi), 2.0 * state.t)

        direction, memory = self._direction(grad_t, state.memory, trial)
        stationarity = self.stationarity(trial, grad_t, f_t)
        converged = accept & (
            (state.f - f_t <= self.ftol * jnp.abs(f_t)) | (stationarity <= self.gtol) | (f_t <= 1e-30)
        )
        stalled = ~accept & give_up
        small_grad = self.stationarity(state.theta, state.grad, state.f) <= 1e-3
        status = jnp.select(
            [converged, stalled & small_grad, stalled],
            [Status.CONVERGED, Status.CONVERGED, Status.ILL_CONDITIONED],
            Status.RUNNING,
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

    def terminate(self, state: LBFGSState):
        return state.status != Status.RUNNING

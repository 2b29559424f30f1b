"""Levenberg-Marquardt on the residuals s(theta) (plain or square-root Huber).

One residual-and-Jacobian evaluation per step, at the trial point: when the step is accepted the
Jacobian there is already in hand. Damping follows Nielsen's update with Marquardt's scaling by the
running maximum of diag(J^T J), so the method is invariant to the parameters' units.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..types import Status

_TINY = 1e-300


class LMState(eqx.Module):
    theta: jax.Array  # [n_free]
    f: jax.Array  # 0.5 ||s||^2
    grad: jax.Array  # J^T s  [n_free]
    hess: jax.Array  # J^T J  [n_free, n_free]
    scale: jax.Array  # running max of diag(J^T J)  [n_free]
    lam: jax.Array
    nu: jax.Array
    n_steps: jax.Array
    n_evals: jax.Array
    status: jax.Array


class LevenbergMarquardt(eqx.Module):
    """ftol: converged when an accepted step lowers f by <= ftol * f (and the scaled gradient is
    small); gtol: converged when max_j |g_j| max(|theta_j|, 1) <= gtol * f; lam_max: damping beyond
    which no step can make progress (the lane stops)."""

    ftol: float = 1e-12
    gtol: float = 1e-10
    loose_gtol: float = 1e-3
    lam_max: float = 1e16

    def _scaled_grad(self, state_theta, grad, f):
        return jnp.max(jnp.abs(grad) * jnp.maximum(jnp.abs(state_theta), 1.0)) / jnp.maximum(f, _TINY)

    def init(self, residuals, theta, problem) -> LMState:
        theta = residuals.project(theta)
        s, jac = residuals.value_and_jacobian(theta, problem)
        f = 0.5 * jnp.dot(s, s)
        hess = jac.T @ jac
        grad = jac.T @ s
        finite = jnp.isfinite(f) & jnp.all(jnp.isfinite(hess)) & jnp.all(jnp.isfinite(grad))
        status = jnp.where(finite, Status.RUNNING, Status.NON_FINITE)
        return LMState(
            theta=theta, f=f, grad=grad, hess=hess, scale=jnp.maximum(jnp.diag(hess), _TINY),
            lam=jnp.asarray(1e-3), nu=jnp.asarray(2.0), n_steps=jnp.asarray(0), n_evals=jnp.asarray(1),
            status=status,
        )

    def step(self, residuals, state: LMState, problem) -> LMState:
        damped = state.hess + jnp.diag(state.lam * state.scale)
        delta = jnp.linalg.solve(damped, -state.grad)
        trial = residuals.project(state.theta + delta)
        delta = trial - state.theta
        s, jac = residuals.value_and_jacobian(trial, problem)
        f_trial = 0.5 * jnp.dot(s, s)
        predicted = -(jnp.dot(state.grad, delta) + 0.5 * delta @ state.hess @ delta)
        ratio = (state.f - f_trial) / jnp.maximum(predicted, _TINY)
        finite = jnp.isfinite(f_trial) & jnp.all(jnp.isfinite(jac)) & jnp.all(jnp.isfinite(delta))
        accept = finite & (f_trial < state.f)

        hess_t = jac.T @ jac
        grad_t = jac.T @ s
        lam_accept = state.lam * jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
        new = LMState(
            theta=jnp.where(accept, trial, state.theta),
            f=jnp.where(accept, f_trial, state.f),
            grad=jnp.where(accept, grad_t, state.grad),
            hess=jnp.where(accept, hess_t, state.hess),
            scale=jnp.where(accept, jnp.maximum(state.scale, jnp.diag(hess_t)), state.scale),
            lam=jnp.where(accept, lam_accept, state.lam * state.nu),
            nu=jnp.where(accept, 2.0, 2.0 * state.nu),
            n_steps=state.n_steps + 1,
            n_evals=state.n_evals + 1,
            status=state.status,
        )
        decrease = state.f - new.f
        scaled_grad = self._scaled_grad(new.theta, new.grad, new.f)
        small_f = new.f <= 1e-30
        converged = (
            (accept & (decrease <= self.ftol * new.f) & (scaled_grad <= self.loose_gtol))
            | (scaled_grad <= self.gtol)
            | small_f
        )
        stalled = new.lam > self.lam_max
        status = jnp.where(
            converged,
            Status.CONVERGED,
            jnp.where(
                stalled,
                jnp.where(scaled_grad <= self.loose_gtol, Status.CONVERGED, Status.ILL_CONDITIONED),
                Status.RUNNING,
            ),
        )
        return eqx.tree_at(lambda st: st.status, new, status)

    def terminate(self, state: LMState) -> jax.Array:
        return state.status != Status.RUNNING

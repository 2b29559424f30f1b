"""Residuals of one task: the objective written as 0.5 * ||s||^2 so that every solver
(least squares or general minimisation) works on the same function.

For Huber we use the square-root form s = sign(r) sqrt(2 rho(r)), written without a division by
zero or a branch: with t = max(|r|, delta), s = r sqrt(delta (2t - delta)) / t, which is r inside
the quadratic zone and sign(r) sqrt(delta (2|r| - delta)) outside it.

Gauss-Newton solvers also need a curvature weight per point (`curvature`): the Hessian model is
sum_i w_i (d pred_i)(d pred_i)^T. For squared loss w_i = (ds_i/dpred_i)^2, exactly Gauss-Newton. In
Huber's linear zone the loss has no curvature in r at all, so any weight there is a modelling
choice: IRLS takes delta/|r| (a majoriser: safe, short steps), Gauss-Newton on the square-root
residual about half that. We take HUBER_CURVATURE * delta/|r| and keep the exact 1 inside the
quadratic zone: on Epoch's Chinchilla grid (4500 starts) the mean LM iterations per start fell from
75 to 55 with the same optimum and the same share of starts reaching it, and the scipy parity
problems still agree. (A weight below 1 inside the quadratic zone made LM stall near the optimum.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .types import Objective

# Gauss-Newton weight of a point in Huber's linear zone, relative to the IRLS weight delta/|r|.
HUBER_CURVATURE = 0.25


def residual_and_slope(objective: Objective, target, pred, coeff, curvature: bool = False, root=None):
    """s and ds/dpred, elementwise (the objective's chain rule written by hand); with `curvature`
    also the point's Gauss-Newton weight w (see the module docstring).

    target, pred, coeff broadcast together: [n_points] for one task, [lanes] for one point.
    root: sqrt(coeff) when the caller has it (the solvers' point scans compute it once per call).
    """
    r = target - pred
    if objective.over_penalty != 1.0:
        # Over-prediction means pred > target, i.e. r < 0.
        coeff = coeff * jnp.where(r < 0, objective.over_penalty, 1.0)
        root = None
    if objective.loss == "huber":
        delta = objective.delta
        size = jnp.abs(r)
        t = jnp.maximum(size, delta)
        # One reciprocal and one reciprocal square root instead of three divisions and a square root.
        inverse_t = 1.0 / t
        q_squared = delta * (2.0 * t - delta)
        inverse_q = jax.lax.rsqrt(q_squared)
        root = jnp.sqrt(coeff) if root is None else root
        inside = size <= delta
        out = root * (r * (q_squared * inverse_q) * inverse_t), -root * jnp.where(inside, 1.0, delta * inverse_q)
        return out + (coeff * jnp.where(inside, 1.0, HUBER_CURVATURE * delta * inverse_t),) if curvature else out
    root = jnp.sqrt(2.0 * coeff)
    out = root * r, -root * jnp.ones_like(r)
    return out + (2.0 * coeff,) if curvature else out


def point_residuals(law, objective: Objective, theta, feats, target, coeff):
    """Scaled residuals s [n_points] with 0.5 * sum(s^2) = sum_i coeff_i rho(r_i).

    theta: [n_params] (full, fit space); feats: [n_points, m]; target: [n_points] (already logged
    for the log space); coeff: [n_points] (weights, mask and 1/n for the mean reduction; 0 on padding).
    """
    pred = law.log_predict(theta, feats) if objective.space == "log" else law.predict(theta, feats)
    return residual_and_slope(objective, target, pred, coeff)[0]


def objective_value(law, objective: Objective, theta, feats, target, coeff):
    """sum_i coeff_i rho(r_i) for one task: a scalar."""
    s = point_residuals(law, objective, theta, feats, target, coeff)
    return 0.5 * jnp.sum(s * s)

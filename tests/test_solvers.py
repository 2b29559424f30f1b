"""Solver pieces against closed forms: variable projection, the small SPD solve, LM/L-BFGS on a
problem with an exact least-squares answer."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

import lawfit
from lawfit import kernels
from lawfit.batch import Tuning
from lawfit.objectives import HUBER_CURVATURE
from lawfit.solvers import varpro
from lawfit.solvers.linalg import spd_solve
from lawfit.solvers.problem import Problem
from lawfit.types import Objective


def test_spd_solve_matches_numpy():
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 4):
        a = rng.normal(size=(6, k, k))
        spd = a @ np.swapaxes(a, 1, 2) + k * np.eye(k)
        b = rng.normal(size=(6, k))
        got = np.asarray(spd_solve(jnp.asarray(spd), jnp.asarray(b)))
        np.testing.assert_allclose(got, np.linalg.solve(spd, b[..., None])[..., 0], rtol=1e-10)


def test_nonnegative_least_squares_against_enumeration():
    rng = np.random.default_rng(1)
    basis = rng.uniform(0, 1, (30, 3))
    y = basis @ np.array([2.0, -1.0, 0.5]) + rng.normal(0, 0.01, 30)
    coef, ssr = varpro._solve_linear(jnp.asarray(basis.T @ basis), jnp.asarray(basis.T @ y), jnp.asarray(y @ y), True)
    from scipy.optimize import nnls

    ref, norm = nnls(basis, y)
    np.testing.assert_allclose(np.asarray(coef), ref, atol=1e-8)
    assert float(ssr) == pytest.approx(norm**2, rel=1e-8)


SEPARABLE_CASES = {
    "chinchilla": ([6.0, 7.5, 0.5, 0.34, 0.36], (17, 23)),
    "overtraining": ([166.0, 366.0, -0.27, 1.8], (16, 24)),
    "compute": ([8.0, 0.5, 0.15], (40, 48)),
    "m2": ([2.0, -0.3, 0.2], (5, 12)),
}


@pytest.mark.parametrize("name", sorted(SEPARABLE_CASES))
def test_separable_scan_equals_generic_scan(name):
    law = kernels.get(name)
    generic = dataclasses.replace(law, varpro=dataclasses.replace(law.varpro, depends=None))
    rng = np.random.default_rng(2)
    truth, (low, high) = SEPARABLE_CASES[name]
    raw = np.exp(rng.uniform(low, high, (40, len(law.inputs))))
    target = np.asarray(law.predict_raw(np.asarray(truth), raw)) * np.exp(rng.normal(0, 0.01, 40))
    objective = Objective("squared", space="log")
    feats = law.features(jnp.asarray(raw))
    problem = Problem(feats, jnp.log(jnp.asarray(target)), jnp.ones(40), jnp.zeros(law.n_params))
    fast, fast_values = varpro.varpro_starts(law, objective, problem, 8)
    slow, slow_values = varpro.varpro_starts(generic, objective, problem, 8)
    np.testing.assert_allclose(np.asarray(fast_values), np.asarray(slow_values), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", ["lm", "lbfgs"])
def test_log_linear_law_matches_closed_form(solver):
    """m1 in log space is linear: log eps = log_beta + c log x, so least squares is np.polyfit."""
    rng = np.random.default_rng(3)
    x = np.exp(rng.uniform(2, 12, 50))
    y = 3.0 * x**-0.4 * np.exp(rng.normal(0, 0.05, 50))
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    result = lawfit.fit("m1", pl.DataFrame({"tokens": x, "value": y}), objective="squared-log", solver=solver)
    assert result.status == "converged"
    np.testing.assert_allclose(result.theta, [intercept, slope], rtol=1e-7)
    residual = np.log(y) - (intercept + slope * np.log(x))
    assert result.objective == pytest.approx(np.sum(residual**2), rel=1e-9)


def test_evaluator_matches_autodiff():
    """f and J^T s from the one-pass evaluator equal jax autodiff of the objective; its curvature
    model is J^T J for squared loss and sum_i w_i (d pred_i)(d pred_i)^T for Huber, with weight 1
    in the quadratic zone and HUBER_CURVATURE * delta / |r| outside it."""
    law = kernels.get("chinchilla")
    rng = np.random.default_rng(4)
    raw = np.exp(np.c_[rng.uniform(17, 23, 24), rng.uniform(20, 26, 24)])
    feats = law.features(jnp.asarray(raw))
    target = jnp.asarray(rng.uniform(0.6, 1.3, 24))
    coeff = jnp.asarray(rng.uniform(0.5, 2.0, 24))
    problems = Problem(feats[None], target[None], coeff[None], jnp.zeros((1, 5)))
    theta = jnp.asarray(law.grid_starts()[::900][None])  # [1, 5, 5]
    theta = theta.at[0, 0].set([6.0, 7.0, -0.3, 0.3, 0.3])  # near the data: some points in Huber's quadratic zone
    single = Problem(feats, target, coeff, jnp.zeros(5))
    delta = 0.1
    n_inside = 0
    for objective in (Objective("huber", delta, "log", "sum"), Objective("squared", space="log")):
        for analytic in (True, False):
            use = law if analytic else dataclasses.replace(law, log_predict_jac=None)
            out = lawfit.solvers.Evaluator(use, objective, tuple(range(5)))(theta, problems)
            residuals = lawfit.solvers.Residuals(use, objective, tuple(range(5)))
            for r in range(theta.shape[1]):
                s, jac = residuals.value_and_jacobian(theta[0, r], single)
                np.testing.assert_allclose(out.f[0, r], 0.5 * s @ s, rtol=1e-12)
                np.testing.assert_allclose(out.grad[0, r], jac.T @ s, rtol=1e-9, atol=1e-14)
                f, g = jax.value_and_grad(residuals.value)(theta[0, r], single)
                np.testing.assert_allclose(out.grad[0, r], g, rtol=1e-9, atol=1e-14)
                if objective.loss == "squared":
                    np.testing.assert_allclose(out.hess[0, r], jac.T @ jac, rtol=1e-9, atol=1e-14)
                    continue
                pred_jac = np.asarray(jax.jacfwd(lambda th: law.log_predict(th, feats))(theta[0, r]))
                size = np.abs(np.asarray(target) - np.asarray(law.log_predict(theta[0, r], feats)))
                weight = np.asarray(coeff) * np.where(size <= delta, 1.0, HUBER_CURVATURE * delta / size)
                n_inside += int(np.sum(size <= delta))
                np.testing.assert_allclose(out.hess[0, r], pred_jac.T @ (weight[:, None] * pred_jac), rtol=1e-9)
    assert n_inside > 0  # both zones were exercised


def test_refill_cadence_does_not_change_results():
    """Refilling lanes every 4 steps gives the same rows as one uninterrupted loop per pool."""
    rng = np.random.default_rng(6)
    tasks = []
    for k in range(3):
        x = np.exp(rng.uniform(40, 48, 20 + 7 * k))
        y = 1.7 + np.exp(9.0 + k) * x ** -(0.2 + 0.05 * k) * np.exp(rng.normal(0, 0.01, x.size))
        tasks.append(
            lawfit.Task(
                law="compute", inputs=x[:, None], target=y, init=24, seed=k, objective=Objective("squared", space="log")
            )
        )
    staged = lawfit.fit_many(tasks, tuning=Tuning(steps_per_call=4), keep_restarts=True)
    whole = lawfit.fit_many(tasks, tuning=Tuning(steps_per_call=100000), keep_restarts=True)
    for column in ("objective", "status", "iterations", "best_restart", "restart_objective", "restart_iterations"):
        assert staged[column].to_list() == whole[column].to_list(), column


def test_padded_batches_return_the_real_tasks_and_restarts():
    """64 tasks x 8 starts is 512 lanes: the solve runs padded and gives back exactly its tasks' rows,
    equal to solving each task alone."""
    rng = np.random.default_rng(5)
    tasks = []
    for k in range(64):
        x = np.geomspace(1e18, 1e22, 12)
        y = 1.7 + np.exp(9 + 0.01 * k) * x**-0.3 * np.exp(rng.normal(0, 0.01, 12))
        objective = Objective("squared", space="log")
        tasks.append(lawfit.Task(law="compute", inputs=x[:, None], target=y, objective=objective, init=8, seed=k))
    together = lawfit.fit_many(tasks, keep_restarts=True)
    assert together.height == 64 and all(len(v) == 8 for v in together["restart_objective"])
    alone = lawfit.fit_many(tasks[-1:], keep_restarts=True)
    np.testing.assert_allclose(together["restart_objective"][-1].to_numpy(), alone["restart_objective"][0].to_numpy(),
                               rtol=1e-9)  # fmt: skip


def test_lm_stalled_lane_is_converged_only_where_the_undamped_step_gains_nothing():
    """Two lanes stall (a rejected step pushes the damping past lam_max) with the same gradient: the
    one whose undamped Gauss-Newton step would gain <= stall_rtol * f sits at its minimum to rounding
    and ends converged (`settle`, run by the driver only in steps where a lane stalled); the other is
    ill-conditioned."""
    import equinox as eqx

    from lawfit.solvers import loop
    from lawfit.solvers.base import Evaluation
    from lawfit.solvers.lm import LevenbergMarquardt
    from lawfit.types import Status

    solver = LevenbergMarquardt()
    theta = jnp.zeros((1, 2, 2))
    grad = jnp.array([[[1e-2, 0.0], [1e-2, 0.0]]])  # scaled gradient 1e-2: above loose_gtol
    hess = jnp.stack([jnp.eye(2) * 1e12, jnp.eye(2)])[None]  # undamped gains 5e-17 and 5e-5 (f = 1)
    at_start = Evaluation(jnp.ones((1, 2)), grad, hess)
    per_lane = jax.vmap(jax.vmap(solver.init))
    state = per_lane(theta, at_start)
    state = eqx.tree_at(lambda s: s.lam, state, jnp.full((1, 2), 0.6 * solver.lam_max))
    trial = theta + 1.0
    worse = Evaluation(jnp.full((1, 2), 2.0), grad, hess)  # rejected: the damping doubles past lam_max
    new = loop._finish(solver, state, trial, worse, 10_000, 0, loop._per_lane)
    assert np.asarray(new.status).tolist() == [[Status.CONVERGED, Status.ILL_CONDITIONED]]
    assert np.asarray(new.theta).tolist() == np.asarray(theta).tolist()

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
                np.testing.assert_allclose(out["f"][0, r], 0.5 * s @ s, rtol=1e-12)
                np.testing.assert_allclose(out["grad"][0, r], jac.T @ s, rtol=1e-9, atol=1e-14)
                f, g = jax.value_and_grad(residuals.value)(theta[0, r], single)
                np.testing.assert_allclose(out["grad"][0, r], g, rtol=1e-9, atol=1e-14)
                if objective.loss == "squared":
                    np.testing.assert_allclose(out["hess"][0, r], jac.T @ jac, rtol=1e-9, atol=1e-14)
                    continue
                pred_jac = np.asarray(jax.jacfwd(lambda th: law.log_predict(th, feats))(theta[0, r]))
                size = np.abs(np.asarray(target) - np.asarray(law.log_predict(theta[0, r], feats)))
                weight = np.asarray(coeff) * np.where(size <= delta, 1.0, HUBER_CURVATURE * delta / size)
                n_inside += int(np.sum(size <= delta))
                np.testing.assert_allclose(out["hess"][0, r], pred_jac.T @ (weight[:, None] * pred_jac), rtol=1e-9)
    assert n_inside > 0  # both zones were exercised


def test_compact_plan_keeps_running_lanes_per_task():
    running = np.zeros((5, 6), dtype=bool)
    running[1, [0, 4]] = True
    running[3, [1, 2, 5]] = True
    index, tasks = lawfit.solvers.loop.compact_plan(running, min_restarts=4)
    assert index.shape == (2, 4) and tasks.tolist() == [1, 3]
    assert index[0].tolist() == [6, 10, -1, -1]
    assert index[1].tolist() == [19, 20, 23, -1]


def test_dropping_finished_lanes_does_not_change_results():
    """Compaction between stages (every 4 steps) gives the same rows as one uninterrupted loop."""
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
    staged = lawfit.fit_many(tasks, stage_steps=4, keep_restarts=True)
    whole = lawfit.fit_many(tasks, stage_steps=100000, keep_restarts=True)
    for column in ("objective", "status", "iterations", "best_restart", "restart_objective", "restart_iterations"):
        assert staged[column].to_list() == whole[column].to_list(), column


def test_lane_padding_takes_batches_off_aliasing_lane_counts():
    from lawfit.solvers.loop import ALIAS_LANES, lane_padding

    for n_tasks in [1, 2, 3, 63, 64, 65, 128, 512, 1000, 1024]:
        for n_restarts in [1, 8, 16, 24, 64, 512, 1024, 4096, 4500]:
            extra_tasks, extra_restarts = lane_padding(n_tasks, n_restarts)
            lanes = (n_tasks + extra_tasks) * (n_restarts + extra_restarts)
            if (n_tasks * n_restarts) % ALIAS_LANES:
                assert (extra_tasks, extra_restarts) == (0, 0)  # only batches that need it are padded
            assert lanes % ALIAS_LANES, (n_tasks, n_restarts)
            assert extra_tasks <= 1 and extra_restarts <= 8
            # Without padded restarts (varpro or screening picks) the task padding alone must do.
            extra_tasks, extra_restarts = lane_padding(n_tasks, n_restarts, pad_restarts=False)
            assert extra_restarts == 0
            if n_restarts % ALIAS_LANES:
                assert ((n_tasks + extra_tasks) * n_restarts) % ALIAS_LANES


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


def test_dropping_compiled_programs_mid_job_changes_no_result(monkeypatch):
    """A long job drops its compiled programs when the process nears the kernel's memory-map limit
    (each CPU program holds mappings of code). Forced after every chunk, the fits come out the same."""
    from lawfit import api

    rng = np.random.default_rng(11)
    tasks = []
    for k in range(24):
        x = np.geomspace(1e18, 1e22, 10 + k % 7)
        y = 1.7 + np.exp(9 + 0.02 * k) * x**-0.3 * np.exp(rng.normal(0, 0.01, x.size))
        tasks.append(lawfit.Task(law="compute", inputs=x[:, None], target=y, init=4, seed=k))
    kept = lawfit.fit_many(tasks, chunk_lanes=4 * 16 * 4)
    released = []
    monkeypatch.setattr(api, "MAPS_RELEASE_FRACTION", 0.0)
    monkeypatch.setattr(api, "MAPS_CHECK_SECONDS", 0.0)
    monkeypatch.setattr(api, "release_programs", lambda original=api.release_programs: released.append(1) or original())
    dropped = lawfit.fit_many(tasks, chunk_lanes=4 * 16 * 4)
    assert len(released) >= 6  # one per chunk of 4 tasks
    assert dropped["status"].to_list() == kept["status"].to_list()
    np.testing.assert_allclose(dropped["objective"].to_numpy(), kept["objective"].to_numpy(), rtol=1e-12)


def test_compact_plan_gives_slow_restarts_single_lanes():
    """When a few restarts of many tasks still run, each gets one lane (with its task's data) instead
    of a row of min_restarts lanes."""
    running = np.zeros((6, 16), dtype=bool)
    running[[0, 2, 3, 5], [3, 0, 15, 7]] = True
    running[2, 9] = True
    index, tasks = lawfit.solvers.loop.compact_plan(running, max_single_lanes=64)
    assert index.shape == (8, 1)
    assert index[:5, 0].tolist() == [3, 32, 41, 63, 87] and (index[5:] == -1).all()
    assert tasks[:5].tolist() == [0, 2, 2, 3, 5]
    rows, _ = lawfit.solvers.loop.compact_plan(running)  # not allowed: task rows
    assert rows.shape == (4, 8)


def test_compacted_batches_give_the_rows_of_one_uninterrupted_loop(monkeypatch):
    """Compaction into task rows and into single lanes, forced every 2 steps, changes no result."""
    from lawfit import api

    monkeypatch.setattr(api, "COMPACT_MIN_WORK", 0)
    rng = np.random.default_rng(8)
    tasks = []
    for k in range(6):
        x = np.exp(rng.uniform(40, 48, 15 + 9 * k))
        y = 1.7 + np.exp(9.0 + k) * x ** -(0.2 + 0.03 * k) * np.exp(rng.normal(0, 0.01, x.size))
        tasks.append(lawfit.Task(law="compute", inputs=x[:, None], target=y, init=12, seed=k,
                                 objective=Objective("squared", space="log")))  # fmt: skip
    whole = lawfit.fit_many(tasks, stage_steps=100000, keep_restarts=True)
    for single in (0, 1 << 22):
        monkeypatch.setattr(api, "SINGLE_LANE_POINTS", single)
        staged = lawfit.fit_many(tasks, stage_steps=2, keep_restarts=True, compact="always")
        # Equal up to rounding: a batch's shape sets how the point sums are blocked.
        for column in ("status", "restart_status"):  # (the best restart may be another at the same optimum)
            assert staged[column].to_list() == whole[column].to_list(), (single, column)
        for column in ("objective", "restart_objective"):
            np.testing.assert_allclose(np.asarray(staged[column].to_list()), np.asarray(whole[column].to_list()),
                                       rtol=1e-9)  # fmt: skip

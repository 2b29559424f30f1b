"""Parity with scipy on random problems: the engine's product route (variable-projection scan, then
LM from the best starts) reaches an objective no worse than scipy.optimize.least_squares' best over
grid starts (tight tolerances, numpy residuals) beyond 1e-9 relative on >= 99 % of problems."""

import zlib

import numpy as np
import pytest
from scipy.optimize import least_squares

import lawfit
from lawfit import kernels
from lawfit.types import Objective

N_PROBLEMS = 200
N_STARTS = 4


def _problem(law_name, rng, ill_conditioned):
    """Noisy data from known parameters; ill-conditioned ones cover a narrow range of the inputs."""
    span = 0.3 if ill_conditioned else 3.0
    n_points = int(rng.integers(12, 40))
    if law_name == "chinchilla":
        truth = np.array(
            [
                rng.uniform(4, 8),
                rng.uniform(5, 9),
                rng.uniform(0.2, 0.8),
                rng.uniform(0.25, 0.5),
                rng.uniform(0.25, 0.5),
            ]
        )
        log_n = rng.uniform(17, 17 + span, n_points)
        log_d = rng.uniform(20, 20 + span, n_points)
        raw = np.exp(np.c_[log_n, log_d])
    elif law_name == "compute":
        truth = np.array([rng.uniform(5, 12), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.3)])
        raw = np.exp(rng.uniform(40, 40 + 2 * span, (n_points, 1)))
    elif law_name == "m2":
        truth = np.array([rng.uniform(0, 3), rng.uniform(-0.8, -0.2), rng.uniform(0.05, 0.5)])
        raw = np.exp(rng.uniform(5, 5 + 2 * span, (n_points, 1)))
    else:  # overtraining
        truth = np.array([rng.uniform(50, 300), rng.uniform(100, 500), rng.uniform(-0.35, -0.2), rng.uniform(1.5, 2.0)])
        span = span / 2
        raw = np.exp(np.c_[rng.uniform(16, 16 + span, n_points), rng.uniform(20, 20 + span, n_points)])
    law = kernels.get(law_name)
    clean = np.asarray(law.predict_raw(truth, raw))
    noisy = clean * np.exp(rng.normal(0, 0.01, n_points))
    return raw, noisy


OBJECTIVES = {
    "chinchilla": Objective("huber", 1e-3, "log", "sum"),
    "compute": Objective("squared", space="log"),
    "m2": Objective("squared", space="raw"),
    "overtraining": Objective("squared", space="raw"),
}


NUMPY_PREDICT = {
    "chinchilla": lambda p, x: (
        np.exp(p[2]) + np.exp(p[0] - p[3] * np.log(x[:, 0])) + np.exp(p[1] - p[4] * np.log(x[:, 1]))
    ),
    "compute": lambda p, x: np.exp(p[1]) + np.exp(p[0] - p[2] * np.log(x[:, 0])),
    "m2": lambda p, x: p[2] + np.exp(p[0] + p[1] * np.log(x[:, 0])),
    "overtraining": lambda p, x: p[0] * x[:, 0] ** p[2] + p[1] * 6 ** (p[2] / 2) * x[:, 1] ** p[2] + p[3],
}


def _scipy_best(law, objective, raw, target, starts):
    y = np.log(target) if objective.space == "log" else target
    predict = NUMPY_PREDICT[law.name]

    def residuals(theta):
        with np.errstate(all="ignore"):
            pred = predict(theta, raw)
            out = y - (np.log(pred) if objective.space == "log" else pred)
        return np.where(np.isfinite(out), out, 1e10)

    # The same box as the engine (least_squares' trf handles bounds; lm does not).
    lower, upper = np.asarray(law.lower), np.asarray(law.upper)
    bounded = bool(np.isfinite(lower).any() or np.isfinite(upper).any())
    best = np.inf
    for start in np.clip(starts, lower, upper):
        try:
            if objective.loss == "huber":
                out = least_squares(
                    residuals,
                    start,
                    loss="huber",
                    f_scale=objective.delta,
                    ftol=1e-14,
                    xtol=1e-14,
                    gtol=1e-14,
                    max_nfev=3000,
                    method="trf",
                    bounds=(lower, upper),
                )
                value = out.cost
            else:
                out = least_squares(
                    residuals,
                    start,
                    ftol=1e-14,
                    xtol=1e-14,
                    gtol=1e-14,
                    max_nfev=3000,
                    method="trf" if bounded else "lm",
                    bounds=(lower, upper),
                )
                value = 2.0 * out.cost  # engine's squared objective is sum r^2
        except (ValueError, FloatingPointError):
            continue
        if np.isfinite(value):
            best = min(best, value)
    return best


@pytest.mark.parametrize(
    ("n_problems", "min_parity"),
    [(8, 0.87), pytest.param(N_PROBLEMS, 0.99, marks=pytest.mark.slow)],
    ids=["sample", "sweep"],
)
@pytest.mark.parametrize("law_name", sorted(OBJECTIVES))
def test_engine_matches_or_beats_scipy(law_name, n_problems, min_parity):
    """The fast suite runs a sample of 8 problems per law (at most one miss); the full sweep of 200 is
    marked slow."""
    import jax

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(zlib.crc32(law_name.encode()))
    law = kernels.get(law_name)
    objective = OBJECTIVES[law_name]
    grid = law.grid_starts()
    tasks, starts_all = [], []
    for i in range(n_problems):
        raw, target = _problem(law_name, rng, ill_conditioned=i % 5 == 0)
        starts = grid[rng.choice(len(grid), N_STARTS, replace=False)]
        starts_all.append(starts)
        tasks.append(lawfit.Task(law=law, inputs=raw, target=target, objective=objective, init="varpro"))
    result = lawfit.fit_many(tasks)
    misses = []
    for i, task in enumerate(tasks):
        ours = result["objective"][i]
        ref = _scipy_best(law, objective, np.asarray(task.inputs), np.asarray(task.target), starts_all[i])
        if ours is None or ours > ref * (1 + 1e-9) + 1e-300:
            misses.append((i, ours, ref, result["status"][i]))
    parity = 1 - len(misses) / n_problems
    print(f"{law_name}: parity {parity:.3f}, misses {misses[:5]}")
    assert parity >= min_parity, misses
    # Every miss must say so: a fit that ends worse than scipy's best is never reported "converged"
    # (degenerate optima, e.g. an exponent whose term vanishes over the data, are "ill-conditioned").
    converged_misses = [m for m in misses if m[3] == "converged"]
    assert not converged_misses, converged_misses

"""Synthetic fit jobs: noisy Chinchilla-law point sets from known parameters, drawn lazily so a job of
any size costs the memory of one chunk (benchmarks, runner tests)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from lawfit import kernels

from .types import Objective, Task

# Approach-3 parameters of Epoch's refit (log A, log B, log E, alpha, beta), the centre of the draws.
CHINCHILLA_CENTRE = np.array([np.log(482.0), np.log(2085.0), np.log(1.82), 0.35, 0.37])


def chinchilla_task(index: int, *, seed: int = 0, n_points: int = 24, init=8, noise: float = 0.01) -> Task:
    """Task `index` of a synthetic job: `n_points` runs over 10^7.5..10^10 params and 10^9..10^12
    tokens, parameters drawn around Epoch's fit, log-normal noise; Huber(1e-3) on log residuals.
    The same (seed, index) always gives the same task."""
    rng = np.random.default_rng([seed, index])
    law = kernels.get("chinchilla")
    truth = CHINCHILLA_CENTRE + rng.normal(0, [0.3, 0.3, 0.05, 0.03, 0.03])
    inputs = 10.0 ** np.c_[rng.uniform(7.5, 10, n_points), rng.uniform(9, 12, n_points)]
    a, b, e, alpha, beta = truth
    # The law in numpy (a jax call per task would cost more than drawing the task).
    clean = np.exp(e) + np.exp(a) * inputs[:, 0] ** -alpha + np.exp(b) * inputs[:, 1] ** -beta
    target = clean * np.exp(rng.normal(0, noise, n_points))
    return Task(
        law=law,
        inputs=inputs,
        target=target,
        objective=Objective(),
        init=init,
        seed=index,
        labels={"job_seed": seed, "index": index},
    )


def chinchilla_tasks(n_tasks: int, *, seed: int = 0, n_points: int = 24, init=8) -> Iterator[Task]:
    """Tasks 0..n_tasks-1 of `chinchilla_task`, one at a time."""
    for index in range(n_tasks):
        yield chinchilla_task(index, seed=seed, n_points=n_points, init=init)

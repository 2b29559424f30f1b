"""Synthetic fit jobs: noisy Chinchilla-law point sets from known parameters, drawn lazily so a job of
any size costs the memory of one block (benchmarks, runner tests)."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from lawfit import kernels

from .types import Objective, Task

# Approach-3 parameters of Epoch's refit (log A, log B, log E, alpha, beta), the centre of the draws.
CHINCHILLA_CENTRE = np.array([np.log(482.0), np.log(2085.0), np.log(1.82), 0.35, 0.37])
# Tasks are drawn BLOCK at a time, one generator per (seed, block): a generator and a dozen small
# numpy calls per task cost ~100 us, more than a 24-point task's share of the engine's own host work.
BLOCK = 256
_OBJECTIVE = Objective()


@functools.lru_cache(maxsize=4)
def _block(seed: int, block: int, n_points: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(inputs [BLOCK, n_points, 2], target [BLOCK, n_points]) of tasks block * BLOCK ... + BLOCK - 1."""
    rng = np.random.default_rng([seed, block, n_points])
    truth = CHINCHILLA_CENTRE + rng.normal(0, [0.3, 0.3, 0.05, 0.03, 0.03], (BLOCK, 5))
    inputs = 10.0 ** np.stack([rng.uniform(7.5, 10, (BLOCK, n_points)), rng.uniform(9, 12, (BLOCK, n_points))], -1)
    a, b, e, alpha, beta = (truth[:, i, None] for i in range(5))
    clean = np.exp(e) + np.exp(a) * inputs[..., 0] ** -alpha + np.exp(b) * inputs[..., 1] ** -beta
    target = clean * np.exp(rng.normal(0, noise, (BLOCK, n_points)))
    for array in (inputs, target):  # tasks hold views of the cached block
        array.setflags(write=False)
    return inputs, target


def chinchilla_task(index: int, *, seed: int = 0, n_points: int = 24, init=8, noise: float = 0.01) -> Task:
    """Task `index` of a synthetic job: `n_points` runs over 10^7.5..10^10 params and 10^9..10^12
    tokens, parameters drawn around Epoch's fit, log-normal noise; Huber(1e-3) on log residuals.
    The same (seed, index, n_points, noise) always gives the same task."""
    inputs, target = _block(seed, index // BLOCK, n_points, noise)
    row = index % BLOCK
    return Task(
        law=kernels.get("chinchilla"),
        inputs=inputs[row],
        target=target[row],
        objective=_OBJECTIVE,
        init=init,
        seed=index,
        labels={"job_seed": seed, "index": index},
    )


def chinchilla_tasks(n_tasks: int, *, seed: int = 0, n_points: int = 24, init=8) -> Iterator[Task]:
    """Tasks 0..n_tasks-1 of `chinchilla_task`, one at a time."""
    for index in range(n_tasks):
        yield chinchilla_task(index, seed=seed, n_points=n_points, init=init)

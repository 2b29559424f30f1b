"""The solver contract: what the one driver loop (`loop`) needs from a solver, and the evaluation
record it hands to it.

A solver is a frozen `eqx.Module` of options with four pure functions over ONE lane:

    init(theta, evaluation) -> state        # state at a start, evaluated there
    propose(state) -> theta                 # the next point to evaluate
    update(state, theta, evaluation) -> state
    terminate(state) -> bool                # the lane is done (its status says how)

Its state is an `eqx.Module` with at least the fields of `LaneState` (the scheduler reads them).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .box import Box


class Evaluation(eqx.Module):
    """The objective at a point, per lane: f = 0.5 ||s||^2 [...], grad = J^T s [..., n_free] and, for
    Gauss-Newton solvers, hess = J^T W J [..., n_free, n_free] (None when not asked for)."""

    f: jax.Array
    grad: jax.Array
    hess: jax.Array | None = None


class LaneState(eqx.Module):
    """The fields every solver state carries: the accepted point and its objective, the counters
    and the status code (`types.Status`)."""

    theta: jax.Array  # [n_free]
    f: jax.Array
    n_steps: jax.Array  # solver iterations
    n_evals: jax.Array  # evaluations (one per driver step)
    status: jax.Array


class LaneSolver(Box):
    """Abstract base of the batched solvers (box bounds from `Box`).

    needs_hessian: whether `update` reads `Evaluation.hess`; max_steps: the default budget of
    driver steps (evaluations) per lane.
    """

    needs_hessian: ClassVar[bool] = False
    max_steps: ClassVar[int] = 10000

    @abc.abstractmethod
    def init(self, theta, evaluation: Evaluation): ...

    @abc.abstractmethod
    def propose(self, state): ...

    @abc.abstractmethod
    def update(self, state, theta, evaluation: Evaluation): ...

    @abc.abstractmethod
    def terminate(self, state) -> jax.Array: ...

    def unsettled(self, state) -> jax.Array:
        """Whether `update` left this lane's status to `settle` (a test too costly for every step)."""
        return jnp.zeros((), bool)

    def settle(self, state):
        """The costly part of `update`'s status test, for unsettled lanes only. The driver runs it
        over a batch only in the steps where some lane of the batch is unsettled."""
        return state

"""Batched solvers: each one file of init / propose / update / terminate, all driven by `loop`."""

from . import loop
from .base import Evaluation, LaneSolver, LaneState
from .evaluate import Evaluator
from .grid import GridEvaluator
from .lbfgs import LBFGS
from .lm import LevenbergMarquardt
from .problem import Grid, Problem, Residuals
from .varpro import varpro_starts

# The registry: the CLI's --solver choices and fit_many's `solver` names come from here.
SOLVERS: dict[str, type[LaneSolver]] = {"lm": LevenbergMarquardt, "lbfgs": LBFGS}


def make(name: str, **options):
    """A solver by name ('lm' or 'lbfgs') with its options."""
    try:
        return SOLVERS[name](**options)
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; expected one of {sorted(SOLVERS)}") from None


__all__ = [
    "Evaluation",
    "Evaluator",
    "Grid",
    "GridEvaluator",
    "LBFGS",
    "LaneSolver",
    "LaneState",
    "LevenbergMarquardt",
    "Problem",
    "Residuals",
    "SOLVERS",
    "loop",
    "make",
    "varpro_starts",
]

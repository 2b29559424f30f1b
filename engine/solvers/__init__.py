"""Batched solvers: each one file of init / step / terminate, all driven by `loop.iterate`."""

from .evaluate import Evaluator
from .lbfgs import LBFGS
from .lm import LevenbergMarquardt
from .loop import iterate
from .problem import Problem, Residuals
from .varpro import varpro_starts

SOLVERS = {"lm": LevenbergMarquardt, "lbfgs": LBFGS}


def make(name: str, **options):
    """A solver by name ('lm' or 'lbfgs') with its options."""
    try:
        return SOLVERS[name](**options)
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; expected one of {sorted(SOLVERS)}") from None


__all__ = [
    "Evaluator",
    "LBFGS",
    "LevenbergMarquardt",
    "Problem",
    "Residuals",
    "SOLVERS",
    "iterate",
    "make",
    "varpro_starts",
]

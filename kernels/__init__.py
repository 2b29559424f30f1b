"""The law registry. Each law is a `Law` (see `base`); look one up with `get(name)`."""

from __future__ import annotations

from .base import Law, Separable, VarPro
from .chinchilla import chinchilla, data_constrained, overtraining
from .curves import bnsl_1, bnsl_2, compute, lr_annealing, m1, m2, m3, m4
from .downstream import loss_to_loss, overtraining_downstream, sigmoid
from .formula import FormulaError, from_formula, laws_from_file, melt_outputs
from .isoflop import parabola as isoflop_parabola
from .kaplan import kaplan_nd, kaplan_ns

_REGISTRY: dict[str, Law] = {}


def register(law: Law) -> Law:
    """Add a user law to the registry (by its `name`) and return it."""
    _REGISTRY[law.name] = law
    return law


def get(law: str | Law) -> Law:
    """The law called `law` (or `law` itself when it is already a `Law`)."""
    if isinstance(law, Law):
        return law
    try:
        return _REGISTRY[law]
    except KeyError:
        raise ValueError(f"unknown law {law!r}; known laws: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    """Names of every registered law, sorted."""
    return sorted(_REGISTRY)


for _law in (
    chinchilla,
    data_constrained,
    overtraining,
    kaplan_nd,
    kaplan_ns,
    compute,
    bnsl_1,
    bnsl_2,
    lr_annealing,
    m1,
    m2,
    m3,
    m4,
    sigmoid,
    overtraining_downstream,
    loss_to_loss,
    isoflop_parabola,
):
    register(_law)

__all__ = [
    "FormulaError",
    "Law",
    "Separable",
    "VarPro",
    "from_formula",
    "get",
    "laws_from_file",
    "melt_outputs",
    "names",
    "register",
]

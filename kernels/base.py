"""The `Law` abstraction: one scaling law as a pure function plus the metadata the engine needs.

A law is written for ONE point set. The engine vmaps it over tasks and restarts.

* `features(raw)` turns the raw input columns `[n_points, len(inputs)]` into whatever the law
  computes with (usually logs), once per task, outside the solver loop.
* `predict(theta, feats) -> [n_points]` and optionally `log_predict` (the log of the prediction,
  written in a numerically stable form).
* `theta` lives in the *fit space* named by `param_names` (e.g. `a = log A`); `derived(theta)`
  returns the natural quantities (A, B, E, ...) reported next to them.
* `lower` / `upper` are box bounds in fit space (+-inf when free); solvers project onto them.
* `init_grid` is the default multi-start grid (a product over the listed values).
* `log_predict_jac` / `predict_jac` (optional): the prediction and its derivative with respect to
  each parameter, written by hand; the engine differentiates automatically when absent.
* `varpro` (optional) says which parameters enter linearly, so that the engine can solve them in
  closed form over a grid of the nonlinear ones (variable projection).
* `outputs` (optional): the target columns of a multi-output law (`formula.from_formula`); its last
  input is then the index of the output each point measures.
* `random_starts` (optional): when > 0, the default start set is that many uniform draws in the
  box of `init_grid` (for laws whose grid product would be too large, e.g. formula laws).
* `separable` (optional) says that the prediction is a constant plus one term per input column;
  on data whose inputs take few distinct values (checkpoints of a few model sizes on a shared token
  grid) the engine then sums over the table of distinct values instead of over the points.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray
MAX_GRID_STARTS = 1 << 16

# Training compute of a dense transformer, C = 6 N D (Kaplan et al. 2020): the one place lawfit
# converts between FLOPs, parameters and tokens.
FLOPS_PER_PARAM_TOKEN = 6.0


def training_flops(params, tokens):
    """C = 6 N D, for numbers, numpy arrays or Polars expressions."""
    return FLOPS_PER_PARAM_TOKEN * params * tokens


def size_for_budget(flops, other):
    """D = C / (6 N) for a model of N = `other` parameters (or N = C / (6 D) for D = `other` tokens)."""
    return flops / (FLOPS_PER_PARAM_TOKEN * other)


@dataclasses.dataclass(frozen=True)
class VarPro:
    """Linear structure of a law: `predict = basis(theta_nl, feats) @ coef`.

    nonlinear: names of the parameters scanned on `grid` (each a 1-D tuple of values).
    basis: `(theta_nl [n_nl], feats [n_points, m]) -> [n_points, n_linear]`.
    assemble: `(theta_nl [n_nl], coef [n_linear]) -> theta [n_params]` in fit space.
    nonneg: whether the linear coefficients must be >= 0 (e.g. when theta stores their logs).
    depends: optional, for each basis column the index of the ONE nonlinear parameter it depends on
        (None for a constant column). When given, the scan builds every normal equation from 1-D
        scans and matrix products instead of one basis per grid point (much cheaper).
    """

    nonlinear: tuple[str, ...]
    grid: tuple[tuple[float, ...], ...]
    basis: Callable[[Array, Array], Array]
    assemble: Callable[[Array, Array], Array]
    nonneg: bool = True
    depends: tuple[int | None, ...] | None = None


# A term's value and its nonzero derivatives: (value, {fit-space parameter index: d value / d param}).
Term = tuple[Array, Mapping[int, Array]]


@dataclasses.dataclass(frozen=True)
class Separable:
    """Additive structure of a law's (raw-space) prediction:

        predict(theta, feats) = constant(theta) + row(theta, feats[:, 0]) + column(theta, feats[:, 1])

    constant: `theta -> Term` (scalars); row, column: `(theta, x [n]) -> Term` ([n] arrays), each
    reading ONE feature column, which must depend on the input column of the same index only.
    `theta` is a tuple of the fit-space parameters (scalars, or arrays that broadcast against x).
    """

    constant: Callable[[Sequence[Array]], Term]
    row: Callable[[Sequence[Array], Array], Term]
    column: Callable[[Sequence[Array], Array], Term]


def _log_of_predict(predict: Callable[[Array, Array], Array]) -> Callable[[Array, Array], Array]:
    def log_predict(theta: Array, feats: Array) -> Array:
        return jnp.log(predict(theta, feats))

    return log_predict


def _log_features(raw: Array) -> Array:
    return jnp.log(raw)


@dataclasses.dataclass(frozen=True, eq=False)
class Law:
    """One scaling law. See the module docstring for the meaning of each field."""

    name: str
    param_names: tuple[str, ...]
    inputs: tuple[str, ...]
    predict: Callable[[Array, Array], Array]
    formula: str
    reference: str
    init_grid: Mapping[str, tuple[float, ...]]
    log_predict: Callable[[Array, Array], Array] | None = None
    features: Callable[[Array], Array] = _log_features
    positive_inputs: tuple[str, ...] | None = None
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    derived: Callable[[Mapping[str, float]], dict[str, float]] | None = None
    varpro: VarPro | None = None
    log_predict_jac: Callable[[Array, Array], tuple[Array, Sequence[Array]]] | None = None
    predict_jac: Callable[[Array, Array], tuple[Array, Sequence[Array]]] | None = None
    separable: Separable | None = None
    outputs: tuple[str, ...] = ()
    random_starts: int = 0

    def __post_init__(self) -> None:
        n_params = len(self.param_names)
        if self.lower is None:
            object.__setattr__(self, "lower", (-np.inf,) * n_params)
        if self.upper is None:
            object.__setattr__(self, "upper", (np.inf,) * n_params)
        if self.positive_inputs is None:
            object.__setattr__(self, "positive_inputs", self.inputs)
        if self.log_predict is None:
            object.__setattr__(self, "log_predict", _log_of_predict(self.predict))
        missing = set(self.init_grid) ^ set(self.param_names)
        if missing:
            raise ValueError(f"law {self.name!r}: init_grid keys must equal param_names, differ on {sorted(missing)}")
        for bound in (self.lower, self.upper):
            if len(bound) != n_params:
                raise ValueError(f"law {self.name!r}: bounds need {n_params} entries")

    # Identity semantics: a law is hashable and usable as a static jit argument.
    def __hash__(self) -> int:
        return hash((self.name, self.param_names, self.inputs))

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def __repr__(self) -> str:
        return f"Law({self.name!r}: {self.formula})"

    def predict_raw(self, theta: Array, raw: Array) -> Array:
        """Prediction from raw inputs. theta: [n_params], raw: [n_points, len(inputs)] -> [n_points]."""
        return self.predict(jnp.asarray(theta), self.features(jnp.asarray(raw)))

    def grid_starts(self) -> np.ndarray:
        """The default multi-start grid as `[restarts, n_params]` (product over `init_grid`; read-only)."""
        return _grid_starts(self)

    def natural(self, theta: Sequence[float]) -> dict[str, float]:
        """Fit-space parameters plus the derived natural ones, as a name -> value dict."""
        columns = self.natural_columns(np.asarray(theta, dtype=np.float64)[None])
        return {name: float(v[0]) for name, v in columns.items()}

    def natural_columns(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """`natural` for many parameter vectors at once: theta [n, n_params] -> name -> [n]."""
        values = {name: theta[:, i] for i, name in enumerate(self.param_names)}
        if self.derived is not None:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                derived = self.derived(values)
            n = theta.shape[:1]
            values.update({k: np.broadcast_to(np.asarray(v, dtype=np.float64), n) for k, v in derived.items()})
        return values

    @property
    def natural_names(self) -> tuple[str, ...]:
        """The parameters a researcher reads, in `param_names` order: a fit-space log coordinate is
        replaced by the quantity it encodes (`a` -> `A`, `log_nc` -> `Nc`), then other derived ones."""
        return _natural_names(self)

    def with_inputs(self, *inputs: str) -> Law:
        """The same law reading other columns (e.g. a 1-D law on `params` instead of `tokens`)."""
        if len(inputs) != len(self.inputs):
            raise ValueError(f"law {self.name!r} reads {len(self.inputs)} input(s), got {inputs}")
        mapping = dict(zip(self.inputs, inputs, strict=True))
        positive = tuple(mapping[name] for name in self.positive_inputs)
        return dataclasses.replace(self, inputs=tuple(inputs), positive_inputs=positive)


@functools.cache
def _natural_names(law: Law) -> tuple[str, ...]:
    with np.errstate(all="ignore"):
        derived = [k for k in law.natural(np.ones(law.n_params)) if k not in law.param_names]
    names, used = [], set()
    for name in law.param_names:
        stem = name.removeprefix("log_").lower()
        match = next((k for k in derived if k.lower() == stem and k not in used), None)
        names.append(match or name)
        used.add(match)
    return tuple(names) + tuple(k for k in derived if k not in used)


@functools.cache
def _grid_starts(law: Law) -> np.ndarray:
    # Built once per law: jobs of 10^5 tasks ask for it per task.
    axes = [law.init_grid[name] for name in law.param_names]
    size = int(np.prod([len(axis) for axis in axes], dtype=np.float64))
    if size > MAX_GRID_STARTS:
        raise ValueError(
            f"law {law.name!r}: its start grid is a product of {size:.3g} points (over {MAX_GRID_STARTS}); "
            "ask for random starts instead (init=<number>)"
        )
    grid = np.array(list(itertools.product(*axes)), dtype=np.float64)
    grid.flags.writeable = False
    return grid

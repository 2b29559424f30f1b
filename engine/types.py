"""Shared types: status codes, the objective spec, fit tasks and the result schema."""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np


class Status(enum.IntEnum):
    """Outcome of one fit (one restart, or the best restart of a task)."""

    PAUSED = -4  # a pool lane waiting at a race checkpoint for its task's other restarts (internal)
    IDLE = -3  # a pool lane holding no fit (internal to the scheduler)
    FRESH = -2  # a pool lane loaded with a start, not evaluated yet (internal)
    RUNNING = -1
    CONVERGED = 0
    MAX_ITER = 1
    NON_FINITE = 2
    BOUND_HIT = 3
    ILL_CONDITIONED = 4
    TOO_FEW_POINTS = 5
    INVALID_INPUT = 6
    NON_UNIQUE = 7  # restarts reach the best objective at different parameters (set on the host)
    PRUNED = 8  # a restart stopped by a race: far behind its task's best at a checkpoint (`Race`)
    STALLED = 9  # a restart stopped by a race: f fell by < `Race.stall` (relative) since the last checkpoint

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


_LABELS = {int(status): status.label for status in Status}


def status_label(code: int) -> str:
    return _LABELS[int(code)]


def status_labels(codes) -> list[str]:
    """Labels of an array of status codes (a dict lookup each: `Status(c)` costs ~15 us)."""
    return [_LABELS[c] for c in np.asarray(codes).tolist()]


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a fit minimises: sum_i c_i rho(r_i).

    loss: "squared" (rho = r^2) or "huber" (rho = r^2/2 for |r| <= delta, delta(|r| - delta/2) beyond,
          as scipy.special.huber).
    space: "log" (r = log y - log yhat) or "raw" (r = y - yhat).
    reduction: "sum" or "mean" (mean divides by the number of points; it changes the objective's scale
               and therefore what a relative tolerance means).
    over_penalty: multiplies rho where the law over-predicts (yhat > y); 1 = symmetric.
    """

    loss: str = "huber"
    delta: float = 1e-3
    space: str = "log"
    reduction: str = "sum"
    over_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.loss not in ("squared", "huber"):
            raise ValueError(f"objective loss must be 'squared' or 'huber', got {self.loss!r}")
        if self.space not in ("log", "raw"):
            raise ValueError(f"objective space must be 'log' or 'raw', got {self.space!r}")
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"objective reduction must be 'sum' or 'mean', got {self.reduction!r}")
        if self.loss == "huber" and not (self.delta > 0 and np.isfinite(self.delta)):
            raise ValueError(f"objective delta must be a positive finite number, got {self.delta!r}")
        if not self.over_penalty > 0:
            raise ValueError(f"objective over_penalty must be > 0, got {self.over_penalty!r}")

    @classmethod
    def parse(cls, spec: str | Objective, delta: float = 1e-3) -> Objective:
        """`"huber-log"`, `"squared-raw"`, `"huber-log-mean"`, ... or an Objective."""
        if isinstance(spec, Objective):
            return spec
        parts = spec.split("-")
        if len(parts) not in (2, 3):
            raise ValueError(f"objective spec must look like 'huber-log' or 'squared-raw-mean', got {spec!r}")
        return cls(loss=parts[0], space=parts[1], reduction=parts[2] if len(parts) == 3 else "sum", delta=delta)

    def describe(self) -> str:
        loss = f"huber({self.delta:g})" if self.loss == "huber" else "squared"
        extra = f" over*{self.over_penalty:g}" if self.over_penalty != 1.0 else ""
        return f"{loss}-{self.space}-{self.reduction}{extra}"


@dataclasses.dataclass(frozen=True)
class Race:
    """Racing a task's restarts: at every `every` evaluations its running restarts pause, and only
    those whose objective is within `factor` of the task's best so far (f - best <= (factor - 1)
    |best|, over its finished and paused restarts) go on; the others end as `pruned`. The best
    restart is never pruned. A restart whose f fell by less than `stall` (relative) since its last
    checkpoint ends as `stalled` (crawling along a kink or a clipped plateau). The decision waits for
    all the task's restarts, so it depends only on their trajectories, never on timing or batching.
    Pruning applies to tasks whose restarts all run side by side in one pool row (series of more
    than `Tuning.shared_points` points, restarts no more than the row's width, e.g. 64 restarts);
    the stall test to every restart of such rows. Pools of one restart a row never pause.
    extrapolate: also prune a restart that would still be behind the best if it kept its last
    checkpoint's gain at every checkpoint left in its budget (a linear bound: improvement usually
    slows, but a restart about to leave a plateau is pruned too)."""

    every: int = 100
    factor: float = 2.0
    stall: float = 1e-6
    extrapolate: bool = False

    def __post_init__(self):
        if int(self.every) < 1:
            raise ValueError(f"Race.every must be >= 1 evaluations, got {self.every}")
        if not self.factor >= 1.0:
            raise ValueError(f"Race.factor must be >= 1 (restarts within factor x the best go on), got {self.factor}")
        if not 0.0 <= self.stall < 1.0:
            raise ValueError(f"Race.stall must be in [0, 1) (a relative decrease per checkpoint), got {self.stall}")


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """One fit problem: a law, one point set, an objective and how to start.

    inputs: [n_points, len(law.inputs)] raw input columns, in the law's order.
    target: [n_points] observed values.
    weights: [n_points] per-point weights or None.
    init: "grid" (the law's grid), "screen" (the solver from the best grid starts by objective; for
          a law whose default starts are random draws, from the best of each block of 16 draws),
          "varpro", an int (that many random starts in the grid's box) or an array [restarts, n_params].
    fixed: parameters held at given values (name -> value).
    labels: free-form identifiers copied into the result row (family, metric, ...).
    """

    law: Any
    inputs: np.ndarray
    target: np.ndarray
    weights: np.ndarray | None = None
    objective: Objective = Objective()
    init: Any = "grid"
    fixed: Mapping[str, float] | None = None
    labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0

    @property
    def law_name(self) -> str:
        return self.law if isinstance(self.law, str) else self.law.name

    @functools.cached_property
    def _data_hash(self) -> str:
        digest = hashlib.sha256()
        for array in (self.inputs, self.target, self.weights):
            if array is not None:
                arr = np.ascontiguousarray(np.asarray(array, dtype=np.float64))
                digest.update(str(arr.shape).encode())
                digest.update(arr.tobytes())
        return digest.hexdigest()[:16]

    def data_hash(self) -> str:
        """A hash of the task's arrays (computed once)."""
        return self._data_hash

    def key(self) -> str:
        """A stable hash of everything that defines this fit: the key of its result row."""
        init = self.init
        if not isinstance(init, str | int):
            init = hashlib.sha256(np.ascontiguousarray(np.asarray(init, dtype=np.float64)).tobytes()).hexdigest()
        # repr of plain values, one field per line: a few us where json.dumps of a dict took ~13 us.
        spec = "\n".join(
            (
                self.law_name,
                self.data_hash(),
                _objective_text(self.objective),
                repr(init),
                repr(sorted((self.fixed or {}).items())),
                repr(sorted((str(k), str(v)) for k, v in self.labels.items())),
                repr(int(self.seed)),
            )
        )
        return hashlib.sha256(spec.encode()).hexdigest()[:20]


@functools.lru_cache(maxsize=256)
def _objective_text(objective: Objective) -> str:
    # Computed once per objective: `dataclasses.asdict` deep-copies, a quarter of a small fit's host time.
    return repr(sorted(dataclasses.asdict(objective).items()))

"""Hold-out extrapolation protocol, expanding window: within a family, fit on the models up to a size
(or compute) cut and predict every larger model; the cut moves up one model size at a time.

Works on any table in the observation schema (family, run_id, params, tokens, value; flops derived
when absent). Each model contributes its checkpoints after a warm-up fraction of its training, thinned
to at most `max_points_per_model` (log-spaced in tokens) so that long learning curves do not dominate
the fit or the cost; a held-out model is scored on the last `eval_fraction` of its training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import polars as pl


@dataclasses.dataclass(frozen=True)
class Window:
    """One fit of the protocol: train on `train`, score on `test` (rows of one family)."""

    family: str
    k: int  # number of model sizes (or compute levels) trained on
    cut: float  # largest trained size/compute
    train: pl.DataFrame
    test: pl.DataFrame


@dataclasses.dataclass(frozen=True)
class Holdout:
    """axis: "params" (a size cut) or "flops" (a compute cut on each model's final compute).
    min_train: fewest sizes trained on; max_windows: keep only the last windows (None = all).
    warmup_fraction: checkpoints before this fraction of a model's final tokens are dropped.
    eval_fraction: a held-out model is scored on checkpoints in the last fraction of its tokens.
    max_points_per_model: training checkpoints kept per model (log-spaced in tokens, final kept).
    """

    axis: str = "params"
    min_train: int = 2
    max_windows: int | None = None
    warmup_fraction: float = 0.1
    eval_fraction: float = 0.3
    max_points_per_model: int = 24

    def __post_init__(self) -> None:
        if self.axis not in ("params", "flops"):
            raise ValueError(f"holdout axis must be 'params' or 'flops', got {self.axis!r}")
        if self.min_train < 1:
            raise ValueError(f"holdout min_train must be >= 1, got {self.min_train}")
        if not 0 <= self.warmup_fraction < 1 or not 0 < self.eval_fraction <= 1:
            raise ValueError("holdout fractions: warmup in [0, 1), eval in (0, 1]")
        if self.max_points_per_model < 1:
            raise ValueError(f"holdout max_points_per_model must be >= 1, got {self.max_points_per_model}")

    def describe(self) -> str:
        return (
            f"expanding window on {self.axis}, >= {self.min_train} sizes trained, warm-up {self.warmup_fraction:g}, "
            f"scored on the last {self.eval_fraction:g} of each held-out model, <= {self.max_points_per_model} "
            "points per model"
        )

    def _level(self, family: pl.DataFrame) -> pl.DataFrame:
        """Each row with its model's level on the cut axis (size, or final compute of its run)."""
        if self.axis == "params":
            return family.with_columns(pl.col("params").alias("_level"))
        final = pl.col("flops").max().over("run_id")
        return family.with_columns(final.alias("_level"))

    def _thin(self, rows: pl.DataFrame) -> pl.DataFrame:
        """At most max_points_per_model checkpoints per run, nearest to log-spaced token targets."""
        keep = []
        for run in rows.partition_by("run_id", maintain_order=True):
            run = run.sort("tokens")
            if run.height > self.max_points_per_model:
                log_t = np.log(run["tokens"].to_numpy())
                targets = np.linspace(log_t[0], log_t[-1], self.max_points_per_model)
                run = run[np.unique(np.searchsorted(log_t, targets).clip(0, run.height - 1)).tolist()]
            keep.append(run)
        return pl.concat(keep) if keep else rows

    def windows(self, family: pl.DataFrame) -> Iterator[Window]:
        """The windows of one family's rows (all one family and metric)."""
        name = str(family["family"][0])
        frame = self._level(family)
        final_tokens = pl.col("tokens").max().over("run_id")
        frame = frame.filter(pl.col("tokens") >= self.warmup_fraction * final_tokens)
        levels = np.unique(frame["_level"].to_numpy())
        ks = range(self.min_train, len(levels))
        if self.max_windows is not None:
            ks = ks[-self.max_windows :] if self.max_windows > 0 else ks[:0]
        scored = frame.filter(pl.col("tokens") >= (1 - self.eval_fraction) * final_tokens)
        for k in ks:
            cut = float(levels[k - 1])
            train = self._thin(frame.filter(pl.col("_level") <= cut)).drop("_level")
            test = scored.filter(pl.col("_level") > cut).drop("_level")
            yield Window(name, k, cut, train, test)


def are_percent(observed: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute relative error in percent (NaN when nothing to score or a prediction is not finite)."""
    if observed.size == 0 or not np.all(np.isfinite(predicted)):
        return float("nan")
    return float(100 * np.mean(np.abs(predicted - observed) / np.abs(observed)))

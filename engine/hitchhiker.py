"""The Hitchhiker's-guide fitting protocol (Choshen, Zhang, Andreas 2025), as recorded in the dataset's
"Verified reproduction targets": per scaled family, target = the largest model; train on the k smallest
others and on checkpoint prefixes q of their longest run; fit the Chinchilla form by least squares on the
raw target from the Muennighoff start; score the absolute relative error (ARE) on the target.

`cells` generates the fit tasks (which rows go into which fit) and is independent of the solver; `run`
fits every cell of every family in one batched job.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import polars as pl

from lawfit import kernels

from .api import fit_many
from .fitjob import percentile_interval, resample
from .holdout import are_percent
from .types import Objective, Task

# (a, b, e, alpha, beta) of Muennighoff et al.'s Chinchilla refit: the protocol's single start.
MUENNIGHOFF_START = (6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596)
FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 11))
MAIN_FAMILIES = ("OPT", "gpt3", "t5-pile")
DEFAULT_FAMILIES = {
    "main": MAIN_FAMILIES,
    "no-cut": MAIN_FAMILIES,
    "one-model": ("OPT", "olmo"),
    "scale-down": MAIN_FAMILIES,
    "predict-best": MAIN_FAMILIES,
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One setting of the protocol (written into every cell's provenance).

    cut: train (and, with cut_test, test) rows need tokens > cut; test: "final" = the target's last
    checkpoint(s), "last30" = its rows with tokens >= 0.7 x its maximum.
    scale_down: the sizes in reverse (the paper code's `scale_down`): the target is the SMALLEST model
        and the k train models are the k largest, so the law extrapolates down in size.
    baseline: "best-seen" fits nothing and predicts the lowest training value for every test row
        (the paper code's `PredictBest`), the floor a law has to beat.
    """

    name: str = "main"
    cut: float = 1e10
    cut_test: bool = False
    test: str = "final"
    one_model: bool = False  # train on ONE smaller model at a time, with a and alpha fixed at the start
    scale_down: bool = False
    baseline: str | None = None


VARIANTS = {
    "main": Variant("main"),
    "no-cut": Variant("no-cut", cut=0.0, test="last30"),
    "one-model": Variant("one-model", cut_test=True, test="last30", one_model=True),
    "scale-down": Variant("scale-down", scale_down=True),
    "predict-best": Variant("predict-best", baseline="best-seen"),
}


@dataclasses.dataclass(frozen=True)
class Cell:
    family: str
    k: int  # number of train models (1 for one-model cells)
    q: float
    variant: str
    train_model: float  # size of the train model nearest the target (the largest; the smallest in scale-down)
    train: pl.DataFrame  # rows of the k models farthest from the target kept by the cuts
    test: pl.DataFrame  # the target's scored rows

    @property
    def n_sizes(self) -> int:
        """Distinct model sizes left after the cuts: the heatmap row the paper files the cell under."""
        return self.train["params"].n_unique()


def cells(family_rows: pl.DataFrame, family: str, variant: Variant) -> list[Cell]:
    """Every (k, q) cell of one family. family_rows: the family's rows (params, tokens, value)."""
    rows = family_rows.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
    sizes = sorted(rows["params"].unique().to_list(), reverse=variant.scale_down)
    target_size, smaller = sizes[-1], sizes[:-1]  # "smaller": larger ones in scale-down
    target = rows.filter(pl.col("params") == target_size)
    if variant.cut_test:
        target = target.filter(pl.col("tokens") > variant.cut)
    top = target["tokens"].max()
    test = target.filter(pl.col("tokens") >= (top if variant.test == "final" else 0.7 * top))
    if variant.one_model:  # every model on its own, the target too (its own early checkpoints)
        choices = [(1, [size]) for size in sizes]
    else:
        choices = [(k, smaller[:k]) for k in range(2, len(smaller) + 1)]
    out = []
    for k, train_sizes in choices:
        models = rows.filter(pl.col("params").is_in(train_sizes))
        # One common maximum over the k models, taken before the cut (strict < and > below, as recorded).
        t_max = models["tokens"].max()
        for q in FRACTIONS:
            train = models.filter((pl.col("tokens") > variant.cut) & (pl.col("tokens") < q * t_max))
            out.append(Cell(family, k, q, variant.name, train_sizes[-1], train, test))
    return out


@functools.cache
def _law() -> kernels.Law:
    base = kernels.get("chinchilla")
    # The protocol bounds the exponents below at 0 and leaves the log-coefficients free.
    return dataclasses.replace(base, lower=(-np.inf, -np.inf, -np.inf, 0.0, 0.0), upper=(np.inf,) * 5, varpro=None)


def run(
    data: pl.DataFrame,
    families: Sequence[str] | None = None,
    variants: Sequence[str] = ("main", "no-cut", "one-model"),
    solver: str = "lm",
    starts: np.ndarray | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """Fit every cell of every family and variant in one `fit_many` call (families: the given ones, else
    each variant's defaults: OPT, GPT-3 and T5-Pile; OPT and OLMo for one-model). The best of `starts`
    counts for each cell (one-model cells start from their free coordinates).

    bootstrap: resamples (with replacement) of each cell's training rows, fitted in the same job with
        the same starts; each cell then gets the 2.5/97.5 percentiles of their AREs (`are_lo`, `are_hi`).

    Returns (cells as dicts: variant, family, k, q, n_sizes, are_percent, status, n_train, n_test and,
    with bootstrap, are_lo, are_hi, bootstrap_ok; seconds).
    """
    import time

    law = _law()
    objective = Objective("squared", space="raw", reduction="sum")
    # starts: [n_starts, 5] in (a, b, e, alpha, beta); the protocol's own is the Muennighoff start alone.
    start = np.asarray(MUENNIGHOFF_START)[None, :] if starts is None else np.asarray(starts, dtype=float)
    all_cells: list[Cell] = []
    for variant in variants:
        for family in families or DEFAULT_FAMILIES[variant]:
            rows = data.filter(pl.col("family") == family)
            if rows.height == 0:
                raise ValueError(f"no family {family!r} in the data")
            all_cells += cells(rows, family, VARIANTS[variant])
    # One-model fits hold a and alpha at the start (one size cannot determine the N term).
    fixed = {"a": MUENNIGHOFF_START[0], "alpha": MUENNIGHOFF_START[3]}
    fit_cells = [cell for cell in all_cells if VARIANTS[cell.variant].baseline is None]
    tasks = [
        Task(
            law=law,
            inputs=cell.train.select("params", "tokens").to_numpy(),
            target=cell.train["value"].to_numpy(),
            objective=objective,
            init=start[:, [1, 2, 4]] if VARIANTS[cell.variant].one_model else start,
            fixed=fixed if VARIANTS[cell.variant].one_model else None,
            labels={"family": cell.family, "k": cell.k, "q": cell.q, "variant": cell.variant},
        )
        for cell in fit_cells
    ]
    rng = np.random.default_rng(seed)
    resamples = []
    for task in tasks if bootstrap else ():
        for index in range(bootstrap):
            resamples.append(resample(task, rng, labels={**task.labels, "resample": index}))
    began = time.perf_counter()
    fitted = fit_many(tasks + resamples, solver=solver, progress=progress).to_dicts() if tasks else []
    seconds = time.perf_counter() - began

    def are(cell: Cell, predicted: np.ndarray | None) -> float | None:
        if predicted is None:
            return None
        value = are_percent(cell.test["value"].to_numpy(), predicted)
        return value if np.isfinite(value) else None

    def law_predictions(cell: Cell, rows: list[dict[str, Any]]) -> list[np.ndarray | None]:
        """The test predictions of each row's fit (None without parameters): one batched call for
        all of a cell's rows (a call per bootstrap row spent ~1.5 ms each dispatching jax ops)."""
        fitted_rows = [row for row in rows if row["params"] is not None]
        if not fitted_rows:
            return [None] * len(rows)
        x = cell.test.select("params", "tokens").to_numpy()
        theta = np.array([row["params"] for row in fitted_rows])
        predicted = iter(np.asarray(jax.vmap(law.predict_raw, in_axes=(0, None))(theta, x)))
        return [next(predicted) if row["params"] is not None else None for row in rows]

    def best_seen(cell: Cell, values: np.ndarray) -> np.ndarray | None:
        return np.full(cell.test.height, values.min()) if values.size else None

    finished = ("converged", "ill-conditioned")  # an ill-conditioned fit still predicts: it counts
    fit_index = {id(cell): index for index, cell in enumerate(fit_cells)}
    out = []
    for cell in all_cells:
        extra = {}
        if VARIANTS[cell.variant].baseline:
            train_values = cell.train["value"].to_numpy()
            are_value = are(cell, best_seen(cell, train_values))
            status = "baseline" if train_values.size else "too-few-points"
            if bootstrap:  # the same resampling of the training rows, scored without a fit
                n_rows = train_values.size
                draws = [train_values[rng.integers(0, n_rows, n_rows)] for _ in range(bootstrap if n_rows else 0)]
                scored = [are(cell, best_seen(cell, draw)) for draw in draws]
                values = np.array([v for v in scored if v is not None])
        else:
            index = fit_index[id(cell)]
            row = fitted[index]
            are_value, status = are(cell, law_predictions(cell, [row])[0]), row["status"]
            if bootstrap:
                rows = fitted[len(tasks) + index * bootstrap : len(tasks) + (index + 1) * bootstrap]
                kept = [r for r in rows if r["status"] in finished]
                scored = [are(cell, predicted) for predicted in law_predictions(cell, kept)]
                values = np.array([v for v in scored if v is not None])
        if bootstrap:
            low, high = percentile_interval(values)
            extra = {"are_lo": low, "are_hi": high, "bootstrap_ok": int(values.size)}
        out.append(
            {
                "variant": cell.variant,
                "family": cell.family,
                "k": cell.k,
                "q": cell.q,
                "train_model": cell.train_model,
                "n_sizes": cell.n_sizes,
                "are_percent": are_value,
                "status": status,
                "n_train": cell.train.height,
                "n_test": cell.test.height,
            }
            | extra
        )
    return out, seconds

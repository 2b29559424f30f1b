"""Fit your own runs: every law on every group of an observation table in one batched job, with
held-out extrapolation error and bootstrap intervals. Behind `lawfit fit` and `lawfit predict`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lawfit import kernels
from lawfit.data.schema import with_flops
from lawfit.data.validate import find_issues
from lawfit.kernels.base import training_flops
from lawfit.kernels.chinchilla import compute_optimal as chinchilla_optimal

from . import runner
from .api import fit_many
from .cluster import ALONE, Share
from .plan import varpro_or_grid
from .types import Objective, Status, Task

HOLDOUT = re.compile(r"^\s*(\w+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")
ALIASES = {"size": "params", "n": "params", "data": "tokens", "d": "tokens", "compute": "flops", "c": "flops"}
GOOD = {Status.CONVERGED.label}


def parse_holdout(spec: str | None) -> pl.Expr | None:
    """`"params>1e9"` (or size/data/compute aliases) -> a Polars predicate selecting held-out rows."""
    if not spec:
        return None
    match = HOLDOUT.match(spec)
    if match is None:
        raise ValueError(f"--holdout: expected COLUMN OP NUMBER like 'params>1e9', got {spec!r}")
    column, op, number = match.groups()
    column = ALIASES.get(column.lower(), column)
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"--holdout: {number!r} is not a number") from None
    col = pl.col(column)
    return {">": col > value, ">=": col >= value, "<": col < value, "<=": col <= value}[op]


@dataclasses.dataclass(frozen=True)
class FitJob:
    """What `lawfit fit` runs (written into every result row as provenance)."""

    laws: tuple[str, ...]
    group_by: tuple[str, ...] = ("family", "metric")
    objective: str = "huber-log"
    delta: float = 1e-3
    restarts: str = "varpro"  # "varpro" (laws without a linear structure use "grid"), "grid", "screen", or a number
    solver: str = "lm"
    bootstrap: int = 0
    holdout: str | None = None
    seed: int = 0
    chunk_tasks: int = 2048  # tasks per resumable result file (`runner.run`)


def _init(restarts: str):
    if restarts in ("varpro", "grid", "screen"):
        return restarts
    try:
        count = int(restarts)
    except ValueError:
        raise ValueError(
            f"--restarts: expected 'varpro', 'grid', 'screen' or a number of random starts, got {restarts!r}"
        ) from None
    if count < 1:
        raise ValueError(f"--restarts: need at least 1 start, got {count}")
    return count


def prepare_frame(frame: pl.DataFrame, job: FitJob) -> tuple[pl.DataFrame, list[str]]:
    """Check the table for the job: columns the laws need (an error naming them) and bad rows (dropped,
    counted in the notes). Exact duplicate rows are dropped; rows sharing a key with different values are
    kept as replicate measurements."""
    laws = [kernels.get(name) for name in job.laws]
    needed = sorted({name for law in laws for name in law.inputs} | {"value"})
    if "flops" in needed or "flops" in frame.columns:
        frame = with_flops(frame)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        users = [law.name for law in laws if set(law.inputs) & set(missing)]
        raise ValueError(
            f"missing column(s) {missing} (needed by law(s) {users or list(job.laws)}); the table has {frame.columns}"
        )
    for column in job.group_by:
        if column not in frame.columns:
            raise ValueError(f"--group-by: no column {column!r}; the table has {frame.columns}")
    if frame.height == 0:
        raise ValueError("nothing to fit: the table has no rows")
    notes = []
    before = frame.height
    frame = frame.unique(maintain_order=True)
    if frame.height < before:
        notes.append(f"{before - frame.height} exact duplicate row(s) dropped")
    # One rule for every column a log is taken of: a non-positive value drops its row, reported.
    sizes = {c for c in ("params", "tokens", "flops") if c in needed}
    positive = sorted({c for law in laws for c in law.positive_inputs} | sizes)
    if Objective.parse(job.objective).space == "log":
        positive.append("value")
    issues, bad = find_issues(frame, required=tuple(needed), positive=tuple(positive), numeric=tuple(needed))
    notes += [f"dropped: {issue}" for issue in issues if not issue.problem.startswith("duplicate")]
    key = [c for c in (*job.group_by, "run_id", "metric", *needed) if c in frame.columns and c != "value"]
    replicates = int(frame.select(list(dict.fromkeys(key))).is_duplicated().sum())
    if replicates:
        notes.append(f"{replicates} row(s) share their inputs within a group: kept as replicate measurements")
    frame = frame.filter(~bad).with_columns([pl.col(c).cast(pl.Float64, strict=False) for c in needed])
    if frame.height == 0:
        raise ValueError(f"nothing to fit: every row was dropped ({'; '.join(notes)})")
    return frame, notes


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of the finite values (NaN when fewer than 2)."""
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def resample(task: Task, rng: np.random.Generator, **changes: Any) -> Task:
    """A bootstrap resample of `task`: its points drawn with replacement, other fields as `changes`."""
    n_points = len(task.target)
    pick = rng.integers(0, n_points, n_points)
    return dataclasses.replace(task, inputs=task.inputs[pick], target=task.target[pick], **changes)


def _solve(tasks: list[Task], job: FitJob, progress, parts: Path | None, share: Share) -> list[dict[str, Any]]:
    """Rows of `fit_many(tasks)`, in order; through the resumable runner when `parts` is a folder."""
    if parts is None:
        return fit_many(tasks, solver=job.solver, progress=progress).to_dicts()
    runner.run(
        tasks,
        parts,
        chunk_tasks=job.chunk_tasks,
        progress=progress,
        process_index=share.index,
        process_count=share.count,
        solver=job.solver,
    )
    share.barrier(f"lawfit {parts}")
    return runner.rows_of(tasks, parts)


def run(
    frame: pl.DataFrame,
    job: FitJob,
    progress: bool | None = None,
    parts: str | Path | None = None,
    share: Share = ALONE,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Fit every law on every group. Returns (results: one row per group x law, points: every row with
    its prediction per law and whether it was held out, notes).

    parts: a folder for resumable per-chunk result files (`parts/fits`, `parts/bootstrap`); a rerun
        with the same folder skips the fits already written there.
    share: this process's share of a multi-process job (every process returns the full results).
    """
    parts = None if parts is None else Path(parts)
    objective = Objective.parse(job.objective)
    if objective.loss == "huber":
        objective = dataclasses.replace(objective, delta=float(job.delta))
    init = _init(job.restarts)
    if job.bootstrap < 0:
        raise ValueError(f"--bootstrap: expected a number of resamples >= 0, got {job.bootstrap}")
    laws = [kernels.get(name) for name in job.laws]
    if any(law.outputs for law in laws):
        if len({law.outputs for law in laws}) > 1:
            targets = "; ".join(f"{law.name}: {', '.join(law.outputs) or 'value'}" for law in laws)
            raise ValueError(
                "a multi-output law predicts its own target columns: fit it in a job of laws with the same "
                f"outputs (got {targets})"
            )
        frame = kernels.melt_outputs(frame, laws[0])  # one row per (row, output), its measurement in `value`
    frame, notes = prepare_frame(frame, job)
    heldout = parse_holdout(job.holdout)
    frame = frame.with_columns((heldout if heldout is not None else pl.lit(False)).fill_null(False).alias("heldout"))
    groups = frame.partition_by(list(job.group_by), as_dict=True, maintain_order=True) if job.group_by else {(): frame}
    rng = np.random.default_rng(job.seed)
    tasks: list[Task] = []
    meta: list[dict[str, Any]] = []
    for key, part in groups.items():
        labels = dict(zip(job.group_by, key if isinstance(key, tuple) else (key,), strict=True))
        train = part.filter(~pl.col("heldout"))
        for law in laws:
            law_init = varpro_or_grid(law, init)
            inputs = train.select([pl.col(c).cast(pl.Float64) for c in law.inputs]).to_numpy()
            target = train["value"].cast(pl.Float64).to_numpy()
            tasks.append(
                Task(
                    law=law,
                    inputs=inputs,
                    target=target,
                    objective=objective,
                    init=law_init,
                    seed=job.seed,
                    labels=labels,
                )
            )
            meta.append({"labels": labels, "law": law, "part": part})
    if not tasks:
        raise ValueError("nothing to fit: the table has no usable rows")
    records = _solve(tasks, job, progress, parts and parts / "fits", share)
    # Bootstrap: every resample of every fit in one more batched job, each started from its full-data
    # optimum (the usual warm start; a resample's optimum lies near it).
    boot_tasks, owner = [], []
    for index, (task, row) in enumerate(zip(tasks, records, strict=True)):
        start = task.init if row["params"] is None else np.asarray(row["params"])[None, :]
        for _ in range(job.bootstrap):
            boot_tasks.append(resample(task, rng, init=start))
            owner.append(index)
    boot_records = _solve(boot_tasks, job, progress, parts and parts / "bootstrap", share) if boot_tasks else []
    by_owner: dict[int, list[dict]] = {}
    for index, row in zip(owner, boot_records, strict=True):
        by_owner.setdefault(index, []).append(row)
    results, points = [], []
    for i, (info, row) in enumerate(zip(meta, records, strict=True)):
        law = info["law"]
        boots = by_owner.get(i, [])
        out = {**info["labels"], "law": law.name}
        keep = ("status", "message", "objective", "n_points", "iterations", "n_restarts", "n_at_best", "log10_cond")
        out |= {k: row[k] for k in keep}
        with np.errstate(all="ignore"):
            names = list(law.natural(np.ones(law.n_params)))
        for name in names:
            out[name] = row.get(name)
        if job.bootstrap:
            ok = [b for b in boots if b["status"] in GOOD]
            out["bootstrap_ok"] = len(ok)
            for name in names:
                low, high = percentile_interval(np.array([b.get(name) for b in ok], dtype=float))
                out[f"{name}_lo"], out[f"{name}_hi"] = low, high
        part = info["part"]
        if row["params"] is not None:
            x = part.select([pl.col(c).cast(pl.Float64) for c in law.inputs]).to_numpy()
            with np.errstate(all="ignore"):
                predicted = np.asarray(law.predict_raw(np.asarray(row["params"]), x), dtype=float)
        else:
            predicted = np.full(part.height, np.nan)
        y = part["value"].cast(pl.Float64).to_numpy()
        held = part["heldout"].to_numpy()
        for k, name in enumerate(law.outputs):  # per-output residuals of a jointly fitted law
            mine = ~held & (part[kernels.formula.OUTPUT].to_numpy() == k)
            out[f"sse_{name}"] = float(np.sum((y[mine] - predicted[mine]) ** 2))
        out["n_holdout"] = int(held.sum())
        out["holdout_are_percent"] = (
            float(100 * np.mean(np.abs(y[held] - predicted[held]) / np.abs(y[held]))) if held.any() else None
        )
        out["theta"] = row["params"]
        out["job"] = repr(job)
        results.append(out)
        points.append(part.with_columns(pl.lit(law.name).alias("law"), pl.Series("predicted", predicted)))
    table = pl.DataFrame(results, infer_schema_length=None)
    return table, pl.concat(points, how="diagonal_relaxed"), notes


def predict(results: pl.DataFrame, values: Mapping[str, float], flops_budget: float | None = None) -> pl.DataFrame:
    """Each result row's prediction at the given inputs (and the compute-optimal split of a FLOP budget
    for laws that have one)."""
    # Sizes, the budget and every input a fitted law takes the log (or a fractional power) of must be > 0.
    positive = {"params", "tokens", "flops", "budget"}
    positive |= {c for name in results["law"].unique().to_list() for c in kernels.get(name).positive_inputs}
    for name, value in [*values.items(), *([("budget", flops_budget)] if flops_budget is not None else [])]:
        if not np.isfinite(value) or (name in positive and not value > 0):
            need = "a positive finite number (laws take its log)" if name in positive else "a finite number"
            raise ValueError(f"predict --{name}: expected {need}, got {value!r}")
    labels = results.columns[: results.columns.index("law")]
    rows = []
    for row in results.to_dicts():
        law = kernels.get(row["law"])
        out = {k: row[k] for k in labels} | {"law": law.name, "status": row["status"]}
        point = dict(values)
        if flops_budget is not None and law.name == "chinchilla" and row["theta"] is not None:
            n_opt, d_opt = compute_optimal(row, flops_budget)
            point = {"params": n_opt, "tokens": d_opt, "flops": flops_budget}
            out |= {"params_opt": n_opt, "tokens_opt": d_opt}
        if "flops" in law.inputs and "flops" not in point and {"params", "tokens"} <= set(point):
            point["flops"] = training_flops(point["params"], point["tokens"])
        absent = [name for name in law.inputs if name not in point]
        if flops_budget is not None and law.name != "chinchilla" and not values:
            out["prediction"] = None
            out["note"] = f"no compute-optimal rule for law {law.name}"
        elif absent or row["theta"] is None:
            out["prediction"] = None
            out["note"] = f"law {law.name} needs {absent}" if absent else "no fitted parameters"
        else:
            x = np.array([[point[name] for name in law.inputs]], dtype=float)
            out["prediction"] = float(np.asarray(law.predict_raw(np.asarray(row["theta"]), x))[0])
            out["note"] = None if row["status"] in GOOD else f"fit status {row['status']}"
        rows.append(out)
    return pl.DataFrame(rows, infer_schema_length=None)


def compute_optimal(row: Mapping[str, Any], flops: float) -> tuple[float, float]:
    """Chinchilla: minimise E + A/N^alpha + B/D^beta subject to C = 6 N D (Hoffmann et al. eq. 4)."""
    n_opt, d_opt = chinchilla_optimal(row["A"], row["B"], row["alpha"], row["beta"], flops)
    return float(n_opt), float(d_opt)


def fit_table(
    data,
    laws: Sequence[str] | str,
    *,
    columns: Mapping[str, str] | None = None,
    **options: Any,
) -> pl.DataFrame:
    """`lawfit fit` from Python: a Polars/Arrow/pandas table (column names mapped to the schema by
    `columns`, e.g. {"params": "N", "tokens": "D", "value": "loss"}) -> one result row per group x law."""
    from lawfit.data.readers import to_observations

    from .api import _as_frame

    frame = to_observations(_as_frame(data), columns)
    job = FitJob(laws=(laws,) if isinstance(laws, str) else tuple(laws), **options)
    return run(frame, job)[0]

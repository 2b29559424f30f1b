"""Compute-optimal allocation N*(C), D*(C) by Chinchilla's three approaches (Hoffmann et al. 2022,
arXiv:2203.15556, section 3), side by side:

1. the lower envelope of learning curves over FLOPs: at each budget, the size whose curve is lowest;
2. IsoFLOP profiles: at each budget a parabola of loss in log N, whose vertex is N*(C);
3. the parametric law L = E + A/N^alpha + B/D^beta: its minimum under C = 6 N D gives
   a = beta/(alpha+beta), b = alpha/(alpha+beta).

Across budgets N* = k_N C^a and D* = k_D C^b (C = 6 N D, so b = 1 - a for approaches 1 and 2), and
L*(C) = E + A C^-alpha through the minima. Every IsoFLOP profile fit and every approach-3 fit, with
all their bootstrap resamples, is ONE `fit_many` job; the L*(C) laws of every resample are a second.
Approach 1 fits nothing iteratively (an envelope and a least-squares line), so it runs on the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from lawfit import kernels
from lawfit.kernels.base import FLOPS_PER_PARAM_TOKEN, size_for_budget, training_flops
from lawfit.kernels.chinchilla import compute_optimal_frontier

from .api import fit_many, tasks_from_frame
from .fitjob import GOOD, percentile_interval, resample
from .types import Objective, Task

# The published exponents (a, b) of N* ∝ C^a, D* ∝ C^b: Hoffmann et al. 2022, Table 2.
PUBLISHED = {1: (0.50, 0.50), 2: (0.49, 0.51), 3: (0.46, 0.54)}
APPROACH_NAMES = {1: "envelope of training curves", 2: "IsoFLOP profiles", 3: "parametric law"}
# Chinchilla's nine IsoFLOP budgets (Hoffmann et al. 2022, Figure 3).
CHINCHILLA_BUDGETS = (6e18, 1e19, 3e19, 6e19, 1e20, 3e20, 6e20, 1e21, 3e21)

SQUARED_RAW = Objective("squared", space="raw")
APPROACH3_OBJECTIVE = Objective("huber", 1e-3, "log", "sum")  # Hoffmann et al.'s, as `lawfit reproduce`
MIN_PROFILE_POINTS = 3  # a parabola has three coefficients
ENVELOPE_GRID = 200  # budgets on which approach 1 reads the envelope (log-spaced over the data)


@dataclasses.dataclass(frozen=True)
class Budgets:
    """The IsoFLOP budgets of a set of runs.

    centres: [budgets] FLOPs of each budget.
    index: [points] the budget each point lies on (-1: on none within the tolerance).
    tolerance: relative distance |C / centre - 1| (in log terms, log(1 + tolerance)) a point may lie off.
    """

    centres: np.ndarray
    index: np.ndarray
    tolerance: float


def bin_budgets(
    flops: np.ndarray, budgets: Sequence[float] | None = None, tolerance: float = 0.1, min_points: int = 3
) -> Budgets:
    """Assign each run's FLOPs to an IsoFLOP budget.

    budgets: the declared budgets; when None they are found in the data (`_find_budgets`). A point
    further than `tolerance` from every budget lies on none (index -1): it is reported, never
    snapped to a distant budget.
    """
    flops = np.asarray(flops, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(flops) | (flops <= 0))
    if bad.size:
        raise ValueError(f"flops: row {int(bad[0])} is {float(flops[bad[0]])!r}; FLOP budgets must be finite and > 0")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1) (a relative distance), got {tolerance!r}")
    log_c = np.log(flops)
    width = np.log1p(tolerance)
    if budgets is None:
        centres = _find_budgets(log_c, width, min_points)
    else:
        centres = np.sort(np.asarray(budgets, dtype=np.float64))
        if centres.size == 0 or not np.all(np.isfinite(centres) & (centres > 0)):
            raise ValueError(f"budgets must be finite positive FLOP counts, got {list(budgets)}")
    if centres.size == 0:
        return Budgets(centres, np.full(flops.shape, -1), tolerance)
    distance = np.abs(log_c[:, None] - np.log(centres)[None, :])
    nearest = np.argmin(distance, axis=1)
    index = np.where(distance[np.arange(flops.size), nearest] <= width, nearest, -1)
    return Budgets(centres, index, tolerance)


def _find_budgets(log_c: np.ndarray, width: float, min_points: int) -> np.ndarray:
    """Budgets as modes of the runs' log FLOPs: the run with the most others within `width` (log
    units) makes a budget at the median of those neighbours, which are then taken out; repeated
    while a budget would hold at least `min_points` runs. Digitised FLOPs scatter around the design
    budgets, so splitting at gaps would cut one budget into several."""
    left = np.sort(log_c)
    centres = []
    while left.size:
        low = np.searchsorted(left, left - width, side="left")
        high = np.searchsorted(left, left + width, side="right")
        counts = high - low
        best = int(np.argmax(counts))
        if counts[best] < min_points:
            break
        centre = float(np.median(left[low[best] : high[best]]))
        centres.append(centre)
        left = left[np.abs(left - centre) > width]
    return np.exp(np.sort(np.array(centres)))


def power_law(log_c: np.ndarray, log_y: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares lines log y = intercept + slope log C, one per row, over the `ok` entries.

    log_c, log_y, ok: [fits, budgets] -> slope [fits], intercept [fits], used [fits] (NaN where < 2 used).
    Closed form, vectorised over fits (every resample of every group at once)."""
    w = ok & np.isfinite(log_y)
    used = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = np.where(w, log_c, 0).sum(axis=1) / used
        mean_y = np.where(w, log_y, 0).sum(axis=1) / used
        dc = np.where(w, log_c - mean_c[:, None], 0)
        dy = np.where(w, log_y - mean_y[:, None], 0)
        slope = (dc * dy).sum(axis=1) / (dc * dc).sum(axis=1)
        intercept = mean_y - slope * mean_c
    short = used < 2
    slope[short] = np.nan
    intercept[short] = np.nan
    return slope, intercept, used


@dataclasses.dataclass(frozen=True)
class OptimalReport:
    """What `optimal` found. Tables (Polars), each carrying the group columns:

    exponents: one row per (group, approach): a, b with 95 % bootstrap intervals, k_N, budgets used,
        status and a message (why an approach gave nothing).
    predictions: one row per (group, approach, requested budget): N*, D*, L* with intervals.
    profiles: approach 2, one row per (group, budget): points, status (ok / edge-minimum / no-minimum /
        too-few-points / the fit's status), N*, D*, L* and N*'s interval over resamples, the parabola.
    envelope: approach 1, one row per (group, grid budget): the envelope loss, the size attaining it, status.
    points: the input points with their budget (`budget`, null when on none).
    law_rows: approach 3's fit rows (full data), as `fit_many` returns them.
    notes: what was dropped from the input, and why.
    """

    exponents: pl.DataFrame
    predictions: pl.DataFrame
    profiles: pl.DataFrame
    envelope: pl.DataFrame
    points: pl.DataFrame
    law_rows: pl.DataFrame
    budgets: Budgets
    notes: list[str]
    bootstrap: int
    fits: int


def optimal(
    data: Any,
    *,
    approaches: Sequence[int] = (1, 2, 3),
    columns: Mapping[str, str] | None = None,
    group_by: Sequence[str] = (),
    budgets: Sequence[float] | None = None,
    tolerance: float = 0.1,
    bootstrap: int = 0,
    at: Sequence[float] = (),
    min_points: int = MIN_PROFILE_POINTS,
    window: float | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> OptimalReport:
    """N*(C), D*(C) and L*(C) by each approach in `approaches`, per group of rows.

    data: runs with model size, tokens and loss (`columns` maps `params`, `tokens`, `value`, `flops`
        and `run` to the table's names; `flops` falls back to 6 N D, `run` to `run_id`, else to the
        model size). Approach 2 reads the budgets from the FLOPs (`bin_budgets` with `budgets` and
        `tolerance`); approach 1 needs learning curves (several checkpoints per run).
    bootstrap: resamples for the intervals: points within each IsoFLOP profile (approach 2), points
        (approach 3), whole runs (approach 1). Every approach-2 and approach-3 fit is one job.
    at: FLOP budgets at which to predict N*, D*, L*.
    window: approach 2 fits each profile's parabola only to the sizes within this factor of the size
        with the lowest loss (e.g. 4: N_low/4 <= N <= 4 N_low); None fits every size. A wide, skewed
        profile pulls a global parabola's vertex off the minimum; a local one follows it.
    """
    unknown = sorted(set(approaches) - {1, 2, 3})
    if unknown:
        raise ValueError(f"approaches: {unknown} unknown; expected 1, 2 and/or 3")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    if window is not None and not window > 1.0:
        raise ValueError(f"window must be a factor > 1 (sizes within N_low/window..N_low*window), got {window}")
    frame, notes = _points(data, columns or {}, group_by)
    bins = bin_budgets(frame["flops"].to_numpy(), budgets, tolerance)
    frame = frame.with_columns(
        pl.Series("budget", np.where(bins.index >= 0, bins.centres[np.maximum(bins.index, 0)], np.nan)).fill_nan(None)
    )
    rng = np.random.default_rng(seed)
    groups = frame.partition_by(list(group_by), as_dict=True, maintain_order=True) if group_by else {(): frame}
    keys = [dict(zip(group_by, k if isinstance(k, tuple) else (k,), strict=True)) for k in groups]
    parts = list(groups.values())

    # One job: every profile (and its resamples) and every approach-3 fit (and its resamples).
    profile_units = [
        _profile_units(part, min_points, bootstrap, rng, window) if 2 in approaches else [] for part in parts
    ]
    law_tasks = [_law_tasks(part, bootstrap, rng) if 3 in approaches else [] for part in parts]
    tasks = [u.task for units in profile_units for u in units if u.task is not None]
    tasks += [t for ts in law_tasks for t in ts]
    rows = fit_many(tasks, progress=progress) if tasks else pl.DataFrame()
    offset = 0
    profile_rows, law_row_parts = [], []
    for units in profile_units:
        n = sum(u.task is not None for u in units)
        profile_rows.append(rows.slice(offset, n))
        offset += n
    for ts in law_tasks:
        law_row_parts.append(rows.slice(offset, len(ts)))
        offset += len(ts)

    exponent_rows, prediction_rows, profile_tables, envelope_tables, law_tables = [], [], [], [], []
    frontier_fits: list[_Frontier] = []
    for key, part, units, prow, lrows in zip(keys, parts, profile_units, profile_rows, law_row_parts, strict=True):
        if 2 in approaches:
            table, frontier = _approach2(units, prow, bootstrap)
            profile_tables.append(table.with_columns(*(pl.lit(v).alias(k) for k, v in key.items())))
            frontier_fits.append(dataclasses.replace(frontier, key=key))
        if 3 in approaches:
            frontier_fits.append(dataclasses.replace(_approach3(lrows), key=key))
            law_tables.append(lrows.head(1).with_columns(*(pl.lit(v).alias(k) for k, v in key.items())))
        if 1 in approaches:
            table, frontier = _approach1(part, bootstrap, rng)
            envelope_tables.append(table.with_columns(*(pl.lit(v).alias(k) for k, v in key.items())))
            frontier_fits.append(dataclasses.replace(frontier, key=key))

    _fit_loss_frontiers(frontier_fits, progress)
    for fr in frontier_fits:
        exponent_rows.append(fr.exponent_row())
        prediction_rows.extend(fr.prediction_rows(at))
    n_fits = len(tasks) + sum(fr.loss_fits for fr in frontier_fits)
    return OptimalReport(
        exponents=pl.from_dicts(exponent_rows, infer_schema_length=None) if exponent_rows else pl.DataFrame(),
        predictions=pl.from_dicts(prediction_rows, infer_schema_length=None) if prediction_rows else pl.DataFrame(),
        profiles=pl.concat(profile_tables, how="diagonal_relaxed") if profile_tables else pl.DataFrame(),
        envelope=pl.concat(envelope_tables, how="diagonal_relaxed") if envelope_tables else pl.DataFrame(),
        points=frame,
        law_rows=pl.concat(law_tables, how="diagonal_relaxed") if law_tables else pl.DataFrame(),
        budgets=bins,
        notes=notes,
        bootstrap=bootstrap,
        fits=n_fits,
    )


def _points(data: Any, columns: Mapping[str, str], group_by: Sequence[str]) -> tuple[pl.DataFrame, list[str]]:
    """The runs as (group columns, params, tokens, value, flops, run), rows with a non-finite or
    non-positive size, loss or FLOP count dropped and reported in the notes."""
    from .api import _as_frame

    frame = _as_frame(data)
    unknown = sorted(set(columns) - {"params", "tokens", "value", "flops", "run"})
    if unknown:
        raise ValueError(f"columns: {unknown} unknown; map params, tokens, value, flops and run")
    name = {role: columns.get(role, role) for role in ("params", "tokens", "value", "flops")}
    for role in ("params", "tokens", "value"):
        if name[role] not in frame.columns:
            raise ValueError(f"missing column {name[role]!r} (needed as {role}); available columns: {frame.columns}")
    for column in group_by:
        if column not in frame.columns:
            raise ValueError(f"group_by: missing column {column!r}; available columns: {frame.columns}")
    run = columns.get("run", "run_id")
    six_nd = training_flops(pl.col(name["params"]).cast(pl.Float64), pl.col(name["tokens"]).cast(pl.Float64))
    out = frame.select(
        *(pl.col(c) for c in group_by),
        pl.col(name["params"]).cast(pl.Float64).alias("params"),
        pl.col(name["tokens"]).cast(pl.Float64).alias("tokens"),
        pl.col(name["value"]).cast(pl.Float64).alias("value"),
        (pl.col(name["flops"]).cast(pl.Float64).fill_null(six_nd) if name["flops"] in frame.columns else six_nd).alias(
            "flops"
        ),
        (pl.col(run).cast(pl.Utf8) if run in frame.columns else pl.col(name["params"]).cast(pl.Utf8)).alias("run"),
    )
    notes, keep = [], np.ones(out.height, dtype=bool)
    for role in ("params", "tokens", "value", "flops"):
        values = out[role].to_numpy()
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            notes.append(
                f"{int(bad.sum())} row(s) dropped: column {name.get(role, role)!r} ({role}) not a finite number > 0 "
                f"(first: row {first}, {float(values[first])!r})"
            )
        keep &= ~bad
    if not keep.any():
        raise ValueError(f"nothing to fit: every row was dropped ({'; '.join(notes)})")
    return out.filter(pl.Series(keep)), notes


# --- approach 2: IsoFLOP profiles -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ProfileUnit:
    """One (budget, resample) profile: its task (None when it cannot be fitted) and what reads it back."""

    budget: float
    resample: int
    n_ref: float
    x_low: float
    x_high: float
    n_points: int
    task: Task | None


def _profile_units(
    part: pl.DataFrame, min_points: int, bootstrap: int, rng: np.random.Generator, window: float | None
) -> list[_ProfileUnit]:
    units = []
    on_budget = part.filter(pl.col("budget").is_not_null())
    for (budget,), profile in on_budget.partition_by("budget", as_dict=True, maintain_order=True).items():
        log_n = np.log(profile["params"].to_numpy())
        loss = profile["value"].to_numpy()
        if window is not None:
            near = np.abs(log_n - log_n[np.argmin(loss)]) <= np.log(window) * (1 + 1e-12)
            log_n, loss = log_n[near], loss[near]
        centre = float(np.mean(log_n))
        for r in range(bootstrap + 1):
            pick = np.arange(log_n.size) if r == 0 else rng.integers(0, log_n.size, log_n.size)
            x = log_n[pick] - centre
            enough = np.unique(x).size >= min_points
            task = (
                Task(
                    law=kernels.isoflop_parabola,
                    inputs=x[:, None],
                    target=loss[pick],
                    objective=SQUARED_RAW,
                    init=np.zeros((1, 3)),
                )
                if enough
                else None
            )
            units.append(
                _ProfileUnit(
                    float(budget),
                    r,
                    float(np.exp(centre)),
                    float(x.min()),
                    float(x.max()),
                    int(np.unique(x).size),
                    task,
                )
            )
    return units


def vertex(c0: np.ndarray, c1: np.ndarray, c2: np.ndarray, x_low: np.ndarray, x_high: np.ndarray):
    """A parabola's minimum: x* = -c1/(2 c2), L* = c0 - c1^2/(4 c2), and its status: `no-minimum` when
    c2 <= 0 (the profile curves down), `edge-minimum` when x* lies outside the sampled [x_low, x_high]
    (an extrapolated optimum, not a measured one), else `ok`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x_star = -c1 / (2.0 * c2)
        l_star = c0 - c1 * c1 / (4.0 * c2)
    status = np.where(c2 <= 0, "no-minimum", np.where((x_star < x_low) | (x_star > x_high), "edge-minimum", "ok"))
    return x_star, l_star, status


def _approach2(units: list[_ProfileUnit], rows: pl.DataFrame, bootstrap: int) -> tuple[pl.DataFrame, _Frontier]:
    budgets = sorted({u.budget for u in units})
    n_budgets = len(budgets)
    col = {b: j for j, b in enumerate(budgets)}
    shape = (bootstrap + 1, n_budgets)
    log_n_star = np.full(shape, np.nan)
    l_star_all = np.full(shape, np.nan)
    status_all = np.full(shape, "too-few-points", dtype=object)
    theta = np.full(shape + (3,), np.nan)
    fitted = [u for u in units if u.task is not None]
    params = (
        np.array(rows["params"].to_list(), dtype=np.float64).reshape(len(fitted), 3) if fitted else np.zeros((0, 3))
    )
    fit_status = rows["status"].to_list() if fitted else []
    for u, p, s in zip(fitted, params, fit_status, strict=True):
        r, j = u.resample, col[u.budget]
        theta[r, j] = p
        x_star, l_star, status = vertex(p[0], p[1], p[2], u.x_low, u.x_high)
        status_all[r, j] = str(status) if s in GOOD else s
        log_n_star[r, j] = np.log(u.n_ref) + x_star
        l_star_all[r, j] = l_star
    ok = status_all == "ok"
    log_c = np.broadcast_to(np.log(np.array(budgets)), shape)
    full = {u.budget: u for u in units if u.resample == 0}
    intervals = [percentile_interval(np.exp(log_n_star[1:, j][ok[1:, j]])) for j in range(n_budgets)]
    table = pl.DataFrame(
        {
            "budget": budgets,
            "n_points": [full[b].n_points for b in budgets],
            "status": [str(s) for s in status_all[0]],
            "n_opt": np.exp(log_n_star[0]),
            "n_opt_low": [low for low, _ in intervals],
            "n_opt_high": [high for _, high in intervals],
            "d_opt": size_for_budget(np.array(budgets), np.exp(log_n_star[0])),
            "l_opt": l_star_all[0],
            "n_ref": [full[b].n_ref for b in budgets],
            # The sizes the parabola was fitted over (narrower than the profile with a window).
            "n_fit_low": [full[b].n_ref * np.exp(full[b].x_low) for b in budgets],
            "n_fit_high": [full[b].n_ref * np.exp(full[b].x_high) for b in budgets],
            "c0": theta[0, :, 0],
            "c1": theta[0, :, 1],
            "c2": theta[0, :, 2],
        },
        strict=False,
    )
    frontier = _Frontier(approach=2, log_c=np.array(log_c), log_n=log_n_star, ok=ok, loss=l_star_all)
    return table, frontier


# --- approach 3: the parametric law ----------------------------------------------------------------


def _law_tasks(part: pl.DataFrame, bootstrap: int, rng: np.random.Generator) -> list[Task]:
    (task,) = tasks_from_frame(part, "chinchilla", objective=APPROACH3_OBJECTIVE, init="varpro")
    return [task] + [resample(task, rng) for _ in range(bootstrap)]


def _approach3(rows: pl.DataFrame) -> _Frontier:
    law = kernels.get("chinchilla")
    good = np.array([s in GOOD for s in rows["status"].to_list()])
    theta = np.array(
        [p if p is not None else [np.nan] * law.n_params for p in rows["params"].to_list()], dtype=np.float64
    )
    natural = law.natural_columns(theta)
    return _Frontier(
        approach=3,
        law=natural,
        law_ok=good,
        status=rows["status"][0],
        message=rows["message"][0] if "message" in rows.columns else None,
    )


# --- approach 1: the envelope of learning curves ---------------------------------------------------


def envelope(runs: Sequence[tuple[float, np.ndarray, np.ndarray]], grid: np.ndarray):
    """The lower envelope of learning curves at the budgets `grid` (log FLOPs).

    runs: (model size, log C [checkpoints], loss [checkpoints]) per run. Each curve is interpolated
    linearly in (log C, loss) within its own range only (never extrapolated).
    Returns loss [grid] (inf where no run covers), the size attaining it [grid], runs covering [grid]."""
    curves = np.full((len(runs), grid.size), np.inf)
    for i, (_, log_c, loss) in enumerate(runs):
        order = np.argsort(log_c)
        inside = (grid >= log_c[order[0]]) & (grid <= log_c[order[-1]])
        curves[i, inside] = np.interp(grid[inside], log_c[order], loss[order])
    best = np.argmin(curves, axis=0)
    sizes = np.array([n for n, _, _ in runs])
    return curves[best, np.arange(grid.size)], sizes[best], np.isfinite(curves).sum(axis=0)


def _approach1(part: pl.DataFrame, bootstrap: int, rng: np.random.Generator) -> tuple[pl.DataFrame, _Frontier]:
    runs = []
    for _, run in part.partition_by("run", as_dict=True, maintain_order=True).items():
        if run.height >= 2:
            runs.append((float(run["params"][0]), np.log(run["flops"].to_numpy()), run["value"].to_numpy()))
    sizes = np.array(sorted({n for n, _, _ in runs}))
    if sizes.size < 3:
        message = (
            f"approach 1 needs learning curves (>= 2 checkpoints) of >= 3 model sizes; {sizes.size} size(s) have them"
        )
        return pl.DataFrame(), _Frontier(approach=1, status="no-learning-curves", message=message)
    low = min(c.min() for _, c, _ in runs)
    high = max(c.max() for _, c, _ in runs)
    grid = np.linspace(low, high, ENVELOPE_GRID)
    log_n = np.full((bootstrap + 1, grid.size), np.nan)
    loss = np.full((bootstrap + 1, grid.size), np.nan)
    ok = np.zeros((bootstrap + 1, grid.size), dtype=bool)
    statuses = None
    for r in range(bootstrap + 1):
        pick = np.arange(len(runs)) if r == 0 else rng.integers(0, len(runs), len(runs))
        chosen = [runs[i] for i in pick]
        env, size, covering = envelope(chosen, grid)
        smallest, largest = min(n for n, _, _ in chosen), max(n for n, _, _ in chosen)
        status = np.where(
            covering < 2, "too-few-runs", np.where((size == smallest) | (size == largest), "edge-size", "ok")
        )
        ok[r] = status == "ok"
        if np.unique(size[ok[r]]).size < 2:  # one interior size: its N* is flat, no exponent to read
            ok[r] = False
        log_n[r] = np.log(size)
        loss[r] = np.where(np.isfinite(env), env, np.nan)
        if r == 0:
            statuses = status
    table = pl.DataFrame({"budget": np.exp(grid), "l_envelope": loss[0], "n_opt": np.exp(log_n[0]), "status": statuses})
    if not ok[0].any():
        interior = np.unique(np.exp(log_n[0])[statuses == "ok"]).size
        message = f"the envelope is attained by {interior} size(s) strictly between the smallest and largest; need 2"
        return table, _Frontier(approach=1, status="too-few-sizes", message=message)
    frontier = _Frontier(approach=1, log_c=np.broadcast_to(grid, log_n.shape).copy(), log_n=log_n, ok=ok, loss=loss)
    return table, frontier


# --- the frontiers, side by side ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Frontier:
    """One approach's N*(C) for one group: budgets and minima per resample (approaches 1, 2) or the law's
    parameters per resample (approach 3); the L*(C) law fitted later through the minima.

    log_c, log_n, loss, ok: [resamples, budgets]; law: natural parameter name -> [resamples]."""

    approach: int
    key: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    log_c: np.ndarray | None = None
    log_n: np.ndarray | None = None
    ok: np.ndarray | None = None
    loss: np.ndarray | None = None
    law: Mapping[str, np.ndarray] | None = None
    law_ok: np.ndarray | None = None
    status: str = "ok"
    message: str | None = None
    loss_law: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # L*(C): a, e, alpha per resample
    loss_fits: int = 0

    @property
    def empty(self) -> bool:
        return self.log_n is None and self.law is None

    def exponent_a(self) -> tuple[np.ndarray, np.ndarray]:
        """a and log k_N per resample (NaN where the resample gave none)."""
        if self.law is not None:
            alpha, beta = self.law["alpha"], self.law["beta"]
            g, a = compute_optimal_frontier(self.law["A"], self.law["B"], alpha, beta)
            log_k = np.log(g) - a * np.log(FLOPS_PER_PARAM_TOKEN)  # N* = G (C/6)^a
            return np.where(self.law_ok, a, np.nan), np.where(self.law_ok, log_k, np.nan)
        slope, intercept, _ = power_law(self.log_c, self.log_n, self.ok)
        return slope, intercept

    def budgets_used(self) -> int:
        if self.law is not None or self.ok is None:
            return 0
        return int(self.ok[0].sum())

    def exponent_row(self) -> dict[str, Any]:
        row: dict[str, Any] = dict(self.key) | {"approach": self.approach, "method": APPROACH_NAMES[self.approach]}
        if self.empty:
            return row | {"a": None, "b": None, "status": self.status, "message": self.message}
        a, log_k = self.exponent_a()
        low, high = percentile_interval(a[1:])
        status = self.status
        message = self.message
        if not np.isfinite(a[0]):
            status = "too-few-budgets" if self.law is None else status
            message = message or f"{self.budgets_used()} budget(s) with an interior optimum; a power law needs 2"
        return row | {
            "a": _num(a[0]),
            "a_low": _num(low),
            "a_high": _num(high),
            "b": _num(1.0 - a[0]),
            "b_low": _num(1.0 - high),
            "b_high": _num(1.0 - low),
            "k_n": _num(np.exp(log_k[0])),
            "budgets_used": self.budgets_used() if self.law is None else None,
            "resamples_used": int(np.isfinite(a[1:]).sum()),
            "status": status,
            "message": message,
        }

    def frontier(self, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N* [resamples, len(flops)] and L* [resamples, len(flops)] at the budgets `flops`."""
        a, log_k = self.exponent_a()
        log_c = np.log(np.asarray(flops, dtype=np.float64))
        n_opt = np.exp(log_k[:, None] + a[:, None] * log_c[None, :])
        if self.law is not None:
            d_opt = size_for_budget(np.asarray(flops)[None, :], n_opt)
            p = {k: np.asarray(v)[:, None] for k, v in self.law.items()}
            l_opt = p["E"] + p["A"] / n_opt ** p["alpha"] + p["B"] / d_opt ** p["beta"]
        elif self.loss_law:
            ll = {k: np.asarray(v)[:, None] for k, v in self.loss_law.items()}
            l_opt = np.exp(ll["e"]) + np.exp(ll["a"] - ll["alpha"] * log_c[None, :])
        else:
            l_opt = np.full(n_opt.shape, np.nan)
        return n_opt, l_opt

    def prediction_rows(self, at: Sequence[float]) -> list[dict[str, Any]]:
        if self.empty or not len(at):
            return []
        flops = np.asarray(at, dtype=np.float64)
        n_opt, l_opt = self.frontier(flops)
        out = []
        for j, c in enumerate(flops):
            n_low, n_high = percentile_interval(n_opt[1:, j])
            l_low, l_high = percentile_interval(l_opt[1:, j])
            out.append(
                dict(self.key)
                | {
                    "approach": self.approach,
                    "budget": float(c),
                    "n_opt": _num(n_opt[0, j]),
                    "n_opt_low": _num(n_low),
                    "n_opt_high": _num(n_high),
                    "d_opt": _num(size_for_budget(c, n_opt[0, j])),
                    "d_opt_low": _num(size_for_budget(c, n_high)),
                    "d_opt_high": _num(size_for_budget(c, n_low)),
                    "l_opt": _num(l_opt[0, j]),
                    "l_opt_low": _num(l_low),
                    "l_opt_high": _num(l_high),
                }
            )
        return out


def group_rows(table: pl.DataFrame, key: Mapping[str, Any]) -> pl.DataFrame:
    """The rows of a report table that belong to one group (`key`: group column -> value)."""
    if not key or table.height == 0:
        return table
    return table.filter(pl.all_horizontal([pl.col(c) == v for c, v in key.items()]))


def _num(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _fit_loss_frontiers(frontiers: list[_Frontier], progress: bool | None) -> None:
    """L*(C) = E + A C^-alpha through the minima of approaches 1 and 2, every resample in one job."""
    compute = kernels.get("compute")
    tasks, owners = [], []
    for i, fr in enumerate(frontiers):
        if fr.log_n is None:
            continue
        for r in range(fr.log_n.shape[0]):
            use = fr.ok[r] & np.isfinite(fr.loss[r])
            if use.sum() >= compute.n_params:
                tasks.append(
                    Task(
                        law=compute,
                        inputs=np.exp(fr.log_c[r][use])[:, None],
                        target=fr.loss[r][use],
                        objective=Objective("squared", space="log"),
                        init="varpro",
                    )
                )
                owners.append((i, r))
    if not tasks:
        return
    rows = fit_many(tasks, progress=progress)
    per: dict[int, dict[str, np.ndarray]] = {}
    for (i, r), params, status in zip(owners, rows["params"].to_list(), rows["status"].to_list(), strict=True):
        n = frontiers[i].log_n.shape[0]
        law = per.setdefault(i, {k: np.full(n, np.nan) for k in compute.param_names})
        if status in GOOD and params is not None:
            for k, v in zip(compute.param_names, params, strict=True):
                law[k][r] = v
    for i, law in per.items():
        fr = frontiers[i]
        object.__setattr__(fr, "loss_law", law)
        object.__setattr__(fr, "loss_fits", int(sum(o[0] == i for o in owners)))

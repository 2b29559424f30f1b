"""Leaderboard: every applicable law on every family under the hold-out protocol, in one resumable job;
laws ranked by held-out error per family and overall.

A law applies to a table when the table has every input it reads and it reads a scale input (params or
flops): laws of one learning curve (tokens only) or of another loss cannot extrapolate to larger models.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from lawfit import kernels
from lawfit.data.schema import with_flops

from . import runner
from .cluster import ALONE, Share
from .holdout import Holdout, are_percent
from .plan import varpro_or_grid
from .types import Objective, Task

SCALE_INPUTS = {"params", "flops"}
UNRANKED_NO_OPTIMUM = 0.5  # overall, a law with more of its windows without an optimum is not ranked
REACHED_OPTIMUM = ("converged", "ill-conditioned", "non-unique")


@dataclasses.dataclass(frozen=True)
class Leaderboard:
    """What `lawfit leaderboard` runs; `describe()` goes into every result row."""

    laws: tuple[str, ...] = ()  # empty = every applicable law
    families: tuple[str, ...] = ()  # empty = every family with enough model sizes
    metric: str | None = None  # rows of this metric only (None: the table must hold one metric per family)
    holdout: Holdout = Holdout()
    objective: Objective = Objective()
    init: str = "varpro"  # laws without a linear structure screen their grid (see `fallback`)
    fallback: str = "screen"  # "screen": the solver runs from the best 8 grid starts; "grid": from all
    solver: str = "lm"
    max_steps: int = 2000  # per restart; a fit still running then is reported max-iter (and still scored)
    skip_unscaled: bool = True  # families named "<type>:unscaled" (models outside a scaled family)

    def describe(self) -> str:
        return (
            f"hold-out: {self.holdout.describe()}; objective {self.objective.describe()}; "
            f"init {self.init} (else {self.fallback}); "
            f"solver {self.solver}, <= {self.max_steps} steps"
        )


def applicable_laws(frame: pl.DataFrame) -> list[str]:
    """Registered laws whose inputs the table has (non-null) and that read params or flops."""
    present = {c for c in frame.columns if frame[c].null_count() < frame.height}
    if {"params", "tokens"} <= present:
        present.add("flops")
    return [
        name
        for name in kernels.names()
        if set(kernels.get(name).inputs) <= present and SCALE_INPUTS & set(kernels.get(name).inputs)
    ]


def _prepared(frame: pl.DataFrame, spec: Leaderboard) -> pl.DataFrame:
    required = ["family", "run_id", "params", "tokens", "value"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"leaderboard: the table lacks column(s) {missing}; it needs {required}")
    if spec.metric is not None:
        if "metric" not in frame.columns or spec.metric not in frame["metric"].unique().to_list():
            raise ValueError(f"leaderboard: no rows with metric {spec.metric!r}")
        frame = frame.filter(pl.col("metric") == spec.metric)
    elif "metric" in frame.columns:
        mixed = frame.group_by("family").agg(pl.col("metric").n_unique().alias("n")).filter(pl.col("n") > 1)
        if mixed.height:
            raise ValueError(
                f"leaderboard: families {mixed['family'].to_list()[:5]} hold several metrics; choose one with --metric"
            )
    frame = frame.filter(
        pl.col("value").is_finite() & (pl.col("value") > 0) & (pl.col("params") > 0) & (pl.col("tokens") > 0)
    )
    return with_flops(frame)


def plan(frame: pl.DataFrame, spec: Leaderboard) -> tuple[list[Task], list[dict[str, Any]]]:
    """The job's tasks (family x window x law, in that order) and, per task, what scores it.

    Per family, the laws are those applicable to its rows (`--laws` picks among them), and a window is
    kept when it has more training points than the smallest of them has parameters: every law of a
    family is judged on the same windows, and one with too many parameters for a window fails there.
    """
    frame = _prepared(frame, spec)
    for name in spec.laws:
        kernels.get(name)
    families = list(spec.families) or frame["family"].unique(maintain_order=True).to_list()
    known = set(frame["family"].unique().to_list())
    unknown = [f for f in families if f not in known]
    if unknown:
        raise ValueError(f"leaderboard: unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}")
    if spec.skip_unscaled and not spec.families:
        families = [f for f in families if not f.endswith(":unscaled")]
    tasks, meta, used = [], [], set()
    for family in families:
        rows = frame.filter(pl.col("family") == family)
        usable = applicable_laws(rows)
        laws = [name for name in spec.laws if name in usable] if spec.laws else usable
        if not laws:
            continue
        fewest_params = min(kernels.get(name).n_params for name in laws)
        for window in spec.holdout.windows(rows):
            if window.test.height == 0 or window.train.height <= fewest_params:
                continue
            for name in laws:
                law = kernels.get(name)
                used.add(name)
                tasks.append(
                    Task(
                        law=law,
                        inputs=window.train.select([pl.col(c).cast(pl.Float64) for c in law.inputs]).to_numpy(),
                        target=window.train["value"].cast(pl.Float64).to_numpy(),
                        objective=spec.objective,
                        init=varpro_or_grid(law, spec.init, spec.fallback),
                        labels={"family": family, "k": window.k, "cut": window.cut},
                    )
                )
                meta.append(
                    {
                        "family": family,
                        "k": window.k,
                        "cut": window.cut,
                        "law": name,
                        "n_train_models": window.train["run_id"].n_unique(),
                        "n_test_models": window.test["run_id"].n_unique(),
                        "test_inputs": window.test.select([pl.col(c).cast(pl.Float64) for c in law.inputs]).to_numpy(),
                        "test_value": window.test["value"].cast(pl.Float64).to_numpy(),
                    }
                )
    missing = [name for name in spec.laws if name not in used]
    if missing:
        raise ValueError(
            f"leaderboard: law(s) {missing} apply to no family with a hold-out window (their inputs: "
            f"{[kernels.get(n).inputs for n in missing]})"
        )
    if not tasks:
        raise ValueError("leaderboard: no family has enough model sizes for a hold-out window")
    return tasks, meta


def score(rows: list[dict[str, Any]], meta: list[dict[str, Any]], spec: Leaderboard) -> pl.DataFrame:
    """One row per task: the hold-out ARE of its fit, its status and parameters."""
    out = []
    for row, info in zip(rows, meta, strict=True):
        law = kernels.get(info["law"])
        are = None
        if row["params"] is not None:
            with np.errstate(all="ignore"):
                predicted = np.asarray(law.predict_raw(np.asarray(row["params"]), info["test_inputs"]), dtype=float)
            value = are_percent(info["test_value"], predicted)
            are = value if np.isfinite(value) else None
        out.append(
            {
                "family": info["family"],
                "k": info["k"],
                "cut": info["cut"],
                "law": info["law"],
                "are_percent": are,
                "status": row["status"],
                "objective": row["objective"],
                "n_train": row["n_points"],
                "n_train_models": info["n_train_models"],
                "n_test": int(info["test_value"].size),
                "n_test_models": info["n_test_models"],
                "theta": row["params"],
                "task_hash": row["task_hash"],
                "protocol": spec.describe(),
            }
        )
    return pl.DataFrame(out, infer_schema_length=None)


def rank(cells: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per family x law: median and mean hold-out ARE over the windows, failures and rank in the family;
    overall per law: mean rank over families, median of the family medians, wins, failures).

    Laws are ranked within a family by their median ARE over its windows, a window whose fit gave no
    finite prediction counting as an infinite error: a law that fails in half the windows ranks last.
    The mean is over the scored windows only. Overall, a law with more than `UNRANKED_NO_OPTIMUM` of
    its windows without an optimum (max-iter, bound-hit, non-finite, too few points, invalid input;
    ill-conditioned and non-unique fits reached one, whose predictions are scored) is `ranked =
    False` and listed after the ranked ones.
    """
    per_family = (
        cells.group_by("family", "law", maintain_order=True)
        .agg(
            pl.col("are_percent").fill_null(float("inf")).median().alias("median_are_percent"),
            pl.col("are_percent").mean().alias("mean_are_percent"),
            pl.len().alias("windows"),
            pl.col("are_percent").is_null().sum().alias("failed"),
            (pl.col("status") != "converged").sum().alias("not_converged"),
            (~pl.col("status").is_in(REACHED_OPTIMUM)).sum().alias("no_optimum"),
        )
        .with_columns(pl.col("median_are_percent").rank("min").over("family").cast(pl.Int64).alias("rank"))
        .sort("family", "rank")
    )
    overall = (
        per_family.group_by("law")
        .agg(
            pl.col("rank").mean().alias("mean_rank"),
            pl.col("median_are_percent").median().alias("median_family_are_percent"),
            (pl.col("rank") == 1).sum().alias("wins"),
            pl.len().alias("families"),
            pl.col("windows").sum().alias("windows"),
            pl.col("failed").sum().alias("failed"),
            pl.col("not_converged").sum().alias("not_converged"),
            pl.col("no_optimum").sum().alias("no_optimum"),
        )
        # A law whose fits mostly reached no optimum has no standing among the others: listed, not ranked.
        .with_columns((pl.col("no_optimum") <= UNRANKED_NO_OPTIMUM * pl.col("windows")).alias("ranked"))
        .sort(pl.col("ranked").not_(), "mean_rank", "median_family_are_percent")
    )
    return per_family, overall


def markdown(per_family: pl.DataFrame, overall: pl.DataFrame, spec: Leaderboard, title: str) -> str:
    def fmt(value) -> str:
        return "—" if value is None or not np.isfinite(value) else f"{value:.3g}"

    lines = [f"# Leaderboard: {title}", "", f"Protocol: {spec.describe()}.", "", "## Overall", ""]
    lines += [
        "| rank | law | mean rank | median family ARE % | wins | families | windows | failed | not converged "
        "| no optimum |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    places = iter(range(1, overall.height + 1))
    for row in overall.to_dicts():
        place = next(places) if row["ranked"] else "unranked"
        lines.append(
            f"| {place} | {row['law']} | {row['mean_rank']:.2f} | {fmt(row['median_family_are_percent'])} | "
            f"{row['wins']} | {row['families']} | {row['windows']} | {row['failed']} | {row['not_converged']} | "
            f"{row['no_optimum']} |"
        )
    laws = overall["law"].to_list()
    lines += [
        "",
        "## Median hold-out ARE % over each family's windows (best in bold)",
        "",
        "| family | " + " | ".join(laws) + " |",
    ]
    lines.append("|---|" + "---|" * len(laws))
    for family, part in per_family.group_by("family", maintain_order=True):
        by_law = {r["law"]: r for r in part.to_dicts()}
        cells = []
        for law in laws:
            row = by_law.get(law)
            text = fmt(row["median_are_percent"]) if row else "n/a"
            cells.append(f"**{text}**" if row and row["rank"] == 1 else text)
        lines.append(f"| {family[0]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Key: ARE % is the absolute relative error of the held-out predictions. **—**: no finite value (at "
        "least half of the windows gave no finite prediction, so the median is infinite). **n/a**: the law "
        "does not apply to the family (it lacks an input the law reads). **failed**: windows with no finite "
        "prediction. **not converged**: windows whose status is not `converged` (ill-conditioned and "
        "non-unique included). **no optimum**: windows whose fit reached no optimum (max-iter, bound-hit, "
        "non-finite, too few points). **unranked**: more than "
        f"{UNRANKED_NO_OPTIMUM:.0%} of the law's windows reached no optimum, so its errors are not compared; "
        "its numbers are shown for reference.",
    ]
    return "\n".join(lines) + "\n"


def run(
    frame: pl.DataFrame,
    spec: Leaderboard,
    out: str | Path,
    *,
    title: str = "table",
    chunk_tasks: int = 512,
    progress: bool | None = None,
    share: Share = ALONE,
    plot: bool = True,
) -> dict[str, Any]:
    """Fit, score and rank; writes `results.parquet` (one row per family x window x law),
    `leaderboard.md` and `leaderboard.png` into `out` (fits resumable under `out/parts`)."""
    out = Path(out)
    tasks, meta = plan(frame, spec)
    began = time.perf_counter()
    parts = out / "parts"
    summary = runner.run(
        tasks,
        parts,
        chunk_tasks=chunk_tasks,
        progress=progress,
        process_index=share.index,
        process_count=share.count,
        solver=spec.solver,
        max_steps=spec.max_steps,
    )
    share.barrier(f"lawfit leaderboard {out}")
    seconds = time.perf_counter() - began
    if not share.lead:
        return {"tasks": len(tasks), "seconds": seconds}
    cells = score(runner.rows_of(tasks, parts), meta, spec)
    per_family, overall = rank(cells)
    cells.write_parquet(out / "results.parquet")
    (out / "leaderboard.md").write_text(markdown(per_family, overall, spec, title))
    plots = []
    if plot:
        from .plots import leaderboard_plot

        plots.append(str(leaderboard_plot(cells, out / "leaderboard.png")))
    return {
        "tasks": len(tasks),
        "solved": summary.n_solved,
        "resumed": summary.n_skipped,
        "seconds": seconds,
        "families": per_family["family"].n_unique(),
        "laws": overall["law"].to_list(),
        "overall": overall.to_dicts(),
        "out": str(out),
        "plots": plots,
    }

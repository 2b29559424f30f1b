"""The Hitchhiker main grid (OPT, GPT-3, T5-Pile: 120 cells) through the engine against the same protocol
with scipy curve_fit in a loop, in one run: the protocol's single Muennighoff start, and 16 starts per cell
(the Muennighoff start plus 15 fixed random ones); then the whole study (main, no-cut and one-model
variants, 300 cells) with 16 starts as one job.

    python bench/hitchhiker_grid.py          # writes bench/results/hitchhiker_grid.json
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import polars as pl
from common import RESULTS, machine, write
from scipy.optimize import curve_fit

import lawfit
from lawfit import hitchhiker

RESULT_FILE = RESULTS / "hitchhiker_grid.json"


def law(x, a, b, e, alpha, beta):
    n, d = x
    return np.exp(e) + np.exp(a) / n**alpha + np.exp(b) / d**beta


def scipy_cell(cell, starts):
    """curve_fit from every start (trf, alpha, beta >= 0; dogbox fallback as in the protocol); best SSR."""
    x = (cell.train["params"].to_numpy(), cell.train["tokens"].to_numpy())
    y = cell.train["value"].to_numpy()
    if len(y) < 5:
        return None
    bounds = ([-np.inf, -np.inf, -np.inf, 0.0, 0.0], [np.inf] * 5)
    best, best_ssr = None, np.inf
    for start in starts:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                popt, _ = curve_fit(law, x, y, p0=start, bounds=bounds)
            except RuntimeError:
                try:
                    popt, _ = curve_fit(
                        law, x, y, p0=start, bounds=bounds, method="dogbox", x_scale=np.abs(start) + 1e-3
                    )
                except (RuntimeError, ValueError):
                    continue
            except ValueError:
                continue
            ssr = float(np.sum((law(x, *popt) - y) ** 2))
        if np.isfinite(ssr) and ssr < best_ssr:
            best, best_ssr = popt, ssr
    if best is None:
        return None
    xt = (cell.test["params"].to_numpy(), cell.test["tokens"].to_numpy())
    yt = cell.test["value"].to_numpy()
    return float(100 * np.mean(np.abs(yt - law(xt, *best)) / yt))


def engine(data, starts, variants=("main",), repeats=3):
    """(cells, best seconds of `repeats` runs after a first one that compiles: the warm process)."""
    hitchhiker.run(data, variants=variants, starts=starts)  # compile
    runs = [hitchhiker.run(data, variants=variants, starts=starts) for _ in range(repeats)]
    cells, seconds = min(runs, key=lambda r: r[1])
    return cells, seconds


def _fitted_cells(study) -> int:
    """Cells that are fits (the predict-best baseline cells fit nothing)."""
    return sum(hitchhiker.VARIANTS[cell["variant"]].baseline is None for cell in study)


def bootstrap_study(data, starts, resamples: int) -> None:
    """The whole study (every family and variant, 16 starts) with `resamples` bootstrap resamples per
    cell, all in one job, in a fresh process without the persistent compilation cache (so every
    compile counts); added to the recorded results (its scipy rate is the 16-start grid's)."""
    path = RESULT_FILE
    recorded = json.loads(path.read_text())
    from lawfit.batch import programs

    began = time.perf_counter()
    study, seconds = hitchhiker.run(data, variants=tuple(hitchhiker.VARIANTS), starts=starts, bootstrap=resamples)
    wall = time.perf_counter() - began
    n_fits = _fitted_cells(study) * (resamples + 1) * len(starts)
    scipy_rate = recorded["figures"]["16_starts"]["cells"] * 16 / recorded["figures"]["16_starts"]["scipy_seconds"]
    recorded["figures"]["study_16_starts_bootstrap"] = {
        "cells": len(study),
        "resamples_per_cell": resamples,
        "fits": n_fits,
        "engine_seconds_cold": seconds,
        "persistent_compile_cache": False,
        "wall_seconds": wall,
        "engine_fits_per_second": n_fits / seconds,
        "scipy_fits_per_second": scipy_rate,
        "cells_with_interval": sum(c["bootstrap_ok"] >= 2 for c in study),
        "compiled_programs": programs.STATS.count,
        "compile_seconds": programs.STATS.seconds,
        "machine": machine(),
    }
    path.write_text(json.dumps(recorded, indent=2))
    print(f"study with {resamples} resamples per cell: {n_fits} fits in {seconds:.1f} s, "
          f"{n_fits / seconds:.0f} fits/s (scipy {scipy_rate:.0f} fits/s), {programs.STATS.count} programs "
          f"compiled in {programs.STATS.seconds:.1f} s")  # fmt: skip


def sixteen_starts() -> np.ndarray:
    rng = np.random.default_rng(0)
    p0 = np.asarray(hitchhiker.MUENNIGHOFF_START)
    extra = np.column_stack(
        [
            p0[0] + rng.uniform(-2, 2, 15),
            p0[1] + rng.uniform(-2, 2, 15),
            p0[2] + rng.uniform(-0.5, 0.5, 15),
            rng.uniform(0.1, 0.8, 15),
            rng.uniform(0.1, 0.8, 15),
        ]
    )
    return np.vstack([p0, extra])


def main() -> None:
    data = lawfit.datasets.load("hitchhiker")
    p0 = np.asarray(hitchhiker.MUENNIGHOFF_START)
    sixteen = sixteen_starts()
    if "--bootstrap-study" in sys.argv:
        bootstrap_study(data, sixteen, int(sys.argv[sys.argv.index("--bootstrap-study") + 1]))
        return
    figures = {}
    cells = [c for f in hitchhiker.MAIN_FAMILIES for c in hitchhiker.cells(data.filter(pl.col("family") == f), f,
                                                                            hitchhiker.VARIANTS["main"])]  # fmt: skip
    for label, starts in (("1_start", p0[None, :]), ("16_starts", sixteen)):
        ours, engine_seconds = engine(data, starts)
        began = time.perf_counter()
        theirs = [scipy_cell(cell, starts) for cell in cells]
        scipy_seconds = time.perf_counter() - began
        diffs = [abs(o["are_percent"] - t) for o, t in zip(ours, theirs, strict=True)
                 if o["are_percent"] is not None and t is not None]  # fmt: skip
        figures[label] = {
            "cells": len(cells),
            "starts_per_cell": len(starts),
            "engine_seconds_warm": engine_seconds,
            "scipy_seconds": scipy_seconds,
            "scipy_ms_per_cell": 1e3 * scipy_seconds / len(cells),
            "speedup": scipy_seconds / engine_seconds,
            "cells_compared": len(diffs),
            "cells_within_0.1_points": int(sum(d <= 0.1 for d in diffs)),
            "max_are_difference_points": max(diffs),
        }
        print(
            f"{label}: engine {engine_seconds:.3f} s warm, "
            f"scipy curve_fit loop {scipy_seconds:.2f} s "
            f"({1e3 * scipy_seconds / len(cells):.1f} ms/cell) -> {scipy_seconds / engine_seconds:.1f}x; "
            f"{figures[label]['cells_within_0.1_points']}/{len(diffs)} cells within 0.1 ARE points of scipy"
        )
    study, seconds = engine(data, sixteen, variants=tuple(hitchhiker.VARIANTS), repeats=1)
    n_fits = _fitted_cells(study) * len(sixteen)
    scipy_fit_rate = figures["16_starts"]["cells"] * 16 / figures["16_starts"]["scipy_seconds"]
    figures["study_16_starts"] = {
        "cells": len(study),
        "variants": list(hitchhiker.VARIANTS),
        "fits": n_fits,
        "engine_seconds_warm": seconds,
        "engine_fits_per_second": n_fits / seconds,
        "scipy_fits_per_second": scipy_fit_rate,
    }
    print(f"whole study ({len(study)} cells x 16 starts): {seconds:.2f} s, {n_fits / seconds:.0f} fits/s "
          f"(scipy {scipy_fit_rate:.0f} fits/s)")  # fmt: skip
    figures["execution_layer"] = "lane-pool"
    # The bootstrap study is its own (long) run: keep its last recorded figure.
    path = RESULT_FILE
    if path.exists():
        recorded = json.loads(path.read_text())["figures"].get("study_16_starts_bootstrap")
        if recorded is not None:
            figures["study_16_starts_bootstrap"] = recorded
    print("wrote", write("hitchhiker_grid", figures))


if __name__ == "__main__":
    from lawfit.cli import enable_compile_cache

    if "--bootstrap-study" not in sys.argv:
        enable_compile_cache()
    main()

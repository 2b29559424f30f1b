"""Reproductions of published fits on the bundled data."""

from __future__ import annotations

import time
from typing import Any

import jax
import numpy as np
import polars as pl

from lawfit import kernels

from . import datasets
from .api import fit_many, tasks_from_frame
from .fitjob import percentile_interval, resample
from .types import Objective

# Epoch AI's refit of Chinchilla Approach 3 (Besiroglu et al. 2024): best of the 4500-start grid.
CHINCHILLA_REFERENCE = {
    "A": 477.84,
    "B": 2143.9,
    "E": 1.8172,
    "alpha": 0.34731,
    "beta": 0.36718,
    "objective": 1.0182740e-3,
}


def chinchilla_points() -> pl.DataFrame:
    """The 240 points Epoch fits: the bundled 245 less the 5 highest losses."""
    frame = datasets.load("epoch-chinchilla")
    cutoff = frame["value"].sort(descending=True)[4]
    return frame.filter(pl.col("value") < cutoff)


# Epoch AI's bootstrap (4000 resamples of the 240 points): percentile 95 % intervals.
CHINCHILLA_BOOTSTRAP_REFERENCE = {"alpha": (0.317, 0.373), "beta": (0.331, 0.415), "E": (1.769, 1.871)}


def chinchilla(
    solver: str = "lm",
    init: str = "grid",
    varpro_starts: int = 8,
    keep_restarts: bool = False,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Approach 3: Huber(1e-3) SUM on log residuals of the log-sum-exp form.

    init="grid" runs the full 4500-start grid; init="varpro" scans the exponents with the linear
    coefficients solved in closed form and starts the solver from the best `varpro_starts` points.
    `seconds` is the wall time of the solve (compile included unless cached), without data loading.
    keep_restarts adds `restart_objective`: every start's final objective (None where non-finite).
    bootstrap: resamples (with replacement) of the 240 points, all fitted in one batched job, each
    started from the full-data optimum; adds percentile 95 % intervals (`intervals`) and their time.
    """
    points = chinchilla_points()
    tasks = tasks_from_frame(points, "chinchilla", objective=Objective("huber", 1e-3, "log", "sum"), init=init)
    start = time.perf_counter()
    result = fit_many(tasks, solver=solver, varpro_starts=varpro_starts, keep_restarts=True)
    seconds = time.perf_counter() - start
    row = result.row(0, named=True)
    objectives = np.array([np.inf if v is None else v for v in row["restart_objective"]])
    out = {
        "A": row["A"],
        "B": row["B"],
        "E": row["E"],
        "alpha": row["alpha"],
        "beta": row["beta"],
        "a": row["a"],
        "b": row["b"],
        "e": row["e"],
        "objective": row["objective"],
        "status": row["status"],
        "n_points": row["n_points"],
        "n_starts": row["n_restarts"],
        "n_at_best": row["n_at_best"],
        "fraction_at_best_1e-9": float(np.mean(objectives <= row["objective"] * (1 + 1e-9))),
        "solver": solver,
        "init": init,
        "seconds": seconds,
        "devices": jax.local_device_count(),
        "device": jax.devices()[0].platform,
        "reference": CHINCHILLA_REFERENCE,
    }
    if keep_restarts:
        out["restart_objective"] = row["restart_objective"]
    if bootstrap:
        out |= _chinchilla_bootstrap(tasks[0], np.asarray(row["params"]), solver, bootstrap, seed)
    return out


def _chinchilla_bootstrap(task, best: np.ndarray, solver: str, n_resamples: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    resamples = [resample(task, rng, init=best[None, :]) for _ in range(n_resamples)]
    start = time.perf_counter()
    fitted = fit_many(resamples, solver=solver)
    seconds = time.perf_counter() - start
    ok = fitted.filter(pl.col("status") == "converged")
    intervals = {name: list(percentile_interval(ok[name].to_numpy())) for name in ("A", "B", "E", "alpha", "beta")}
    return {
        "bootstrap": {
            "n_resamples": n_resamples,
            "n_converged": ok.height,
            "seconds": seconds,
            "seed": seed,
        },
        "intervals": intervals,
        "reference_intervals": {k: list(v) for k, v in CHINCHILLA_BOOTSTRAP_REFERENCE.items()},
    }


# Gadre et al. 2024, scaling_explorer outputs (RedPajama, C4 eval loss, 17-task top-1 error).
OVERTRAINING_REFERENCE = {
    "rpj": {
        "open_lm_1b/M=640": {"loss": 0.007103, "err17": 0.036365},
        "open_lm_7b/M=20": {"loss": 0.007320, "err17": 0.000464},
    },
}
_SMALL = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")
_OVERTRAIN_TARGETS = (("open_lm_1b", 640.0), ("open_lm_7b", 20.0))


def overtraining(solver: str = "lm") -> dict[str, Any]:
    """Gadre et al.'s over-training law L = a N^eta + b 6^(eta/2) D^eta + E (D = M N) fitted by least squares
    from the authors' 128-start grid on their 5 points per corpus (the 4 small models at M=20 and the
    smallest at M=320), extrapolated to 1.4B at M=640 and 6.9B at M=20; and the downstream law
    Err = eps - k exp(-gamma L) fitted on those points plus 1.4B at M=20, fed the predicted loss."""
    data = datasets.load("overtraining")
    loss = data.filter(pl.col("metric") == "c4_val")
    err = data.filter(pl.col("metric") == "err_avg_17_subset").select("run_id", pl.col("value").alias("err"))
    runs = loss.join(err, on="run_id", how="left").with_columns(
        pl.col("family").str.replace("overtrain-", "").alias("corpus")
    )
    fit_rows = (pl.col("model").is_in(_SMALL) & (pl.col("token_multiplier") == 20.0)) | (
        (pl.col("model") == _SMALL[0]) & (pl.col("token_multiplier") == 320.0)
    )
    corpora = sorted(runs["corpus"].unique().to_list())
    objective = Objective("squared", space="raw")
    loss_tasks, down_tasks = [], []
    for corpus in corpora:
        rows = runs.filter((pl.col("corpus") == corpus) & fit_rows)
        loss_tasks += tasks_from_frame(rows, "overtraining", objective=objective, init="grid")
        down = runs.filter(
            (pl.col("corpus") == corpus)
            & (fit_rows | ((pl.col("model") == "open_lm_1b") & (pl.col("token_multiplier") == 20.0)))
        )
        down_tasks += tasks_from_frame(
            down.with_columns(pl.col("value").alias("loss")), "overtraining_downstream", target="err",
            objective=objective, init="grid",
        )  # fmt: skip
    start = time.perf_counter()
    loss_fits = fit_many(loss_tasks, solver=solver).to_dicts()
    down_fits = fit_many(down_tasks, solver=solver).to_dicts()
    seconds = time.perf_counter() - start
    loss_law, down_law = kernels.get("overtraining"), kernels.get("overtraining_downstream")
    out: dict[str, Any] = {"solver": solver, "seconds": seconds, "corpora": {}}
    for corpus, fit, down in zip(corpora, loss_fits, down_fits, strict=True):
        entry = {
            "params": {k: fit[k] for k in ("a", "b", "eta", "E")},
            "status": fit["status"],
            "n_points": fit["n_points"],
            "downstream": {k: down[k] for k in ("epsilon", "k", "gamma")} | {"status": down["status"]},
            "targets": {},
        }
        for model, multiplier in _OVERTRAIN_TARGETS:
            target = runs.filter(
                (pl.col("corpus") == corpus) & (pl.col("model") == model) & (pl.col("token_multiplier") == multiplier)
            )
            if target.height == 0:
                continue
            x = target.select("params", "tokens").to_numpy()
            predicted = float(np.asarray(loss_law.predict_raw(np.asarray(fit["params"]), x))[0])
            actual = float(target["value"][0])
            item = {
                "loss": actual,
                "loss_predicted": predicted,
                "loss_relative_error": abs(predicted - actual) / actual,
            }
            if target["err"][0] is not None and down["params"] is not None:
                err_pred = float(
                    np.asarray(down_law.predict_raw(np.asarray(down["params"]), np.array([[predicted]])))[0]
                )
                item |= {
                    "err17": float(target["err"][0]),
                    "err17_predicted": err_pred,
                    "err17_relative_error": abs(err_pred - target["err"][0]) / target["err"][0],
                }
            entry["targets"][f"{model}/M={multiplier:g}"] = item
        out["corpora"][corpus] = entry
    out["reference"] = OVERTRAINING_REFERENCE
    return out


# Muennighoff et al. 2023: base Chinchilla terms (their C4 refit, frozen) and the fitted decay constants.
DATABLATIONS_BASE = {"a": 6.255414, "b": 7.3049974, "e": 0.6254804, "alpha": 0.3526596, "beta": 0.3526596}
DATABLATIONS_REFERENCE = {
    "r_d": 15.387756,
    "r_n": 5.309743,
    "huber_sum": 0.015825936570763588,
    "r2": 0.7722046084968408,
}


def datablations(solver: str = "lm") -> dict[str, Any]:
    """The data-constrained law's R_D* and R_N* on the paper's 182 runs, with the Chinchilla terms frozen
    at the authors' values: Huber(1e-3) sum on log residuals from their 16-start grid (0..20 each)."""
    data = datasets.load("datablations").filter(pl.col("fit_subset"))
    grid = np.array([(r_d, r_n) for r_d in np.linspace(0, 20, 4) for r_n in np.linspace(0, 20, 4)])
    (task,) = tasks_from_frame(
        data, "data_constrained", objective=Objective("huber", 1e-3, "log", "sum"), init=np.maximum(grid, 1e-3),
        fixed=DATABLATIONS_BASE,
    )  # fmt: skip
    start = time.perf_counter()
    row = fit_many([task], solver=solver, keep_restarts=True).row(0, named=True)
    seconds = time.perf_counter() - start
    law = kernels.get("data_constrained")
    # The min(N, N_opt) kink makes the objective bumpy: report every local optimum the starts reach.
    basins: dict[tuple[float, float], dict[str, Any]] = {}
    restarts = zip(row["restart_params"], row["restart_objective"], row["restart_status"], strict=True)
    for params, value, status in restarts:
        if value is None:
            continue
        key = (round(params[-2], 1), round(params[-1], 2))
        entry = basins.setdefault(
            key, {"R_D_star": params[-2], "R_N_star": params[-1], "huber_sum": value, "status": status, "n_starts": 0}
        )
        entry["n_starts"] += 1
    y = np.asarray(task.target)

    def r_squared(r_d, r_n):
        theta = np.asarray(row["params"], dtype=float)
        theta[-2:] = r_d, r_n
        with np.errstate(all="ignore"):
            predicted = np.asarray(law.predict_raw(theta, np.asarray(task.inputs)))
        return float(1.0 - np.sum((y - predicted) ** 2) / np.sum((y - y.mean()) ** 2))

    for entry in basins.values():
        entry["r2"] = r_squared(entry["R_D_star"], entry["R_N_star"])
    r2 = r_squared(row["r_d"], row["r_n"])
    return {
        "R_D_star": row["r_d"],
        "R_N_star": row["r_n"],
        "huber_sum": row["objective"],
        "r2": r2,
        "status": row["status"],
        "n_points": row["n_points"],
        "n_starts": row["n_restarts"],
        "local_optima": sorted(basins.values(), key=lambda b: b["huber_sum"]),
        "solver": solver,
        "seconds": seconds,
        "reference": DATABLATIONS_REFERENCE,
    }


def compute_optimal(bootstrap: int = 200, seed: int = 0, at: tuple[float, ...] = (1e24,)) -> dict[str, Any]:
    """Chinchilla approaches 2 and 3 on Epoch's 240 points, beside the published exponents.

    Approach 2 uses the points within 10 % of Chinchilla's nine IsoFLOP budgets (FLOPs = 6 N D of the
    digitised N and D, so points scatter around the design budgets); approach 3 all 240, with Hoffmann
    et al.'s objective. Every profile, law fit and resample is one batched job.
    """
    from . import optimal

    points = chinchilla_points()
    start = time.perf_counter()
    report = optimal.optimal(
        points,
        approaches=(2, 3),
        budgets=optimal.CHINCHILLA_BUDGETS,
        tolerance=0.1,
        bootstrap=bootstrap,
        at=at,
        seed=seed,
        progress=False,
    )
    seconds = time.perf_counter() - start
    ref = CHINCHILLA_REFERENCE
    epoch_a = ref["beta"] / (ref["alpha"] + ref["beta"])
    approaches = []
    for row in report.exponents.iter_rows(named=True):
        published_a, published_b = optimal.PUBLISHED[row["approach"]]
        approaches.append(
            row
            | {"published_a": published_a, "published_b": published_b}
            | ({"epoch_a": epoch_a, "epoch_b": 1.0 - epoch_a} if row["approach"] == 3 else {})
        )
    return {
        "n_points": points.height,
        "n_on_budgets": int((report.budgets.index >= 0).sum()),
        "tolerance": report.budgets.tolerance,
        "bootstrap": bootstrap,
        "approaches": approaches,
        "profiles": report.profiles.to_dicts(),
        "predictions": report.predictions.to_dicts(),
        "fits": report.fits,
        "seconds": seconds,
        "report": report,
    }


PORIAN_WINDOW = 4.0


def porian(bootstrap: int = 100, seed: int = 0, window: float = PORIAN_WINDOW) -> dict[str, Any]:
    """Approach 2 on Porian et al.'s IsoFLOP points (15 settings), beside the authors' exponents.

    Two batched jobs over every setting, budget and resample: the parabola through each whole profile,
    and the parabola through the sizes within `window` of each profile's lowest loss. The authors
    locate each minimum on an interpolating spline instead; their profiles span up to ~100x in N and
    are skewed, which pulls a global parabola's vertex (the bias the Open-Athena study simulates).
    """
    from lawfit.data import bundled

    from . import optimal

    points = datasets.load("porian-isoflop")
    published = bundled.porian_published()
    start = time.perf_counter()
    reports = {
        name: optimal.optimal(
            points,
            approaches=(2,),
            group_by=("family",),
            bootstrap=bootstrap,
            window=w,
            seed=seed,
            progress=False,
        )
        for name, w in (("global", None), ("window", window))
    }
    seconds = time.perf_counter() - start
    by_family = {name: {r["family"]: r for r in rep.exponents.iter_rows(named=True)} for name, rep in reports.items()}
    settings = []
    for family in sorted(published):
        row: dict[str, Any] = {"family": family, "published": published[family]}
        for name in reports:
            fit = by_family[name][family]
            row[name] = {k: fit[k] for k in ("a", "a_low", "a_high", "budgets_used", "status")}
        settings.append(row)
    return {
        "n_points": points.height,
        "bootstrap": bootstrap,
        "window": window,
        "settings": settings,
        "fits": sum(rep.fits for rep in reports.values()),
        "seconds": seconds,
    }

"""ScaleBench's laws: lawfit's one batched job (`lawfit reproduce scalebench`) against ScaleBench's own
procedure written here (scipy L-BFGS-B on the summed squared error from uniform starts inside the
bounds, best of the same number of starts, at most 2000 iterations, per group), in one run. Prints per
task the time ratio and how many laws each side fits better (train objective, relative 1e-6).

The scipy side evaluates each law and its gradient with one jitted jax function of one start (the
benchmark uses hand-written numpy gradients; a jitted call costs ~20-50 us, like a few numpy ops).

    OPENBLAS_NUM_THREADS=1 python bench/scalebench.py [--tasks moe,parallel] [--restarts 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from common import write
from scipy.optimize import minimize

from lawfit import scalebench
from lawfit.kernels import scalebench as laws


def scipy_fit(law, x: np.ndarray, y: np.ndarray, restarts: int, seed: int) -> tuple[float, np.ndarray | None]:
    """The benchmark's LBFGSBFitter: (best summed squared error, its parameters) over `restarts`
    uniform starts."""

    @jax.jit
    def value_and_grad(theta):
        return jax.value_and_grad(lambda t: jnp.sum((law.predict_raw(t, x) - y) ** 2))(theta)

    def objective(theta):
        f, g = value_and_grad(theta)
        return float(f), np.asarray(g, dtype=np.float64)

    low, high = np.array(law.lower), np.array(law.upper)
    rng = np.random.default_rng(seed)
    best, best_theta = np.inf, None
    for _ in range(restarts):
        start = low + (high - low) * rng.random(low.size)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                res = minimize(
                    objective,
                    start,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=list(zip(low, high, strict=True)),
                    options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
                )
                if np.isfinite(res.fun) and res.fun < best:
                    best, best_theta = float(res.fun), np.asarray(res.x, dtype=np.float64)
            except (ValueError, FloatingPointError):
                continue
    return best, best_theta


def fresh_process(tasks: list[str], restarts: int) -> float:
    """Wall time of `lawfit reproduce scalebench` in a new process (what a user waits for)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "lawfit.cli", "reproduce", "scalebench", "--json", "--restarts", str(restarts)]
    subprocess.run([*command, "--task", ",".join(tasks)], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", help="comma-separated task names (default: all six)")
    parser.add_argument("--restarts", type=int, default=64)
    args = parser.parse_args()
    tasks = (
        [t if t.endswith("_scaling_law") else f"{t}_scaling_law" for t in args.tasks.split(",")]
        if args.tasks
        else list(laws.TASKS)
    )

    first = scalebench.run(tasks, restarts=args.restarts)  # includes compiling (cache as it is)
    warm = scalebench.run(tasks, restarts=args.restarts)
    fresh = fresh_process(tasks, args.restarts)
    per_task = {}
    comparisons = []
    for task in tasks:
        spec = laws.TASKS[task]
        groups = scalebench.groups(spec)
        start = time.perf_counter()
        ours = {e["law_id"]: e for e in warm["laws"] if e["task"] == task}
        better = worse = ties = 0
        for law_id in spec.laws:
            law = laws.law(task, law_id)
            total, y_true, y_pred = 0.0, [], []
            for group in groups:
                x, y = scalebench._points(law, group.x_train, group.y_train)
                best, theta = scipy_fit(law, x, y, args.restarts, seed=42)
                total += best
                x_test, y_test = scalebench._points(law, group.x_test, group.y_test)
                y_true.append(y_test)
                with np.errstate(all="ignore"):
                    y_pred.append(
                        np.full_like(y_test, np.nan) if theta is None else np.asarray(law.predict_raw(theta, x_test))
                    )
            y_true, y_pred = np.concatenate(y_true), np.concatenate(y_pred)
            scipy_r2 = scalebench.r_squared(y_true, y_pred) if np.isfinite(y_pred).all() else -1.0
            mine = ours[law_id]["objective"]
            close = abs(mine - total) <= 1e-6 * max(abs(total), 1e-300)
            ties += close
            better += (not close) and mine < total
            worse += (not close) and mine > total
            comparisons.append(
                {
                    "task": task,
                    "law_id": law_id,
                    "lawfit": mine,
                    "scipy": total,
                    "r2": ours[law_id]["r2"],
                    "scipy_r2": scipy_r2,
                    "status": ours[law_id]["status"],
                }
            )
        scipy_seconds = time.perf_counter() - start
        per_task[task] = {
            "scipy_seconds": scipy_seconds,
            "lawfit_better": int(better),
            "scipy_better": int(worse),
            "same": int(ties),
        }
        print(f"{task}: scipy {scipy_seconds:.1f} s; lawfit better {better}, scipy better {worse}, same {ties}")
    scipy_total = sum(t["scipy_seconds"] for t in per_task.values())
    at_least = sum(c["lawfit"] <= c["scipy"] * (1 + 1e-6) for c in comparisons)
    r2_ok = sum(c["r2"] >= c["scipy_r2"] - 0.01 for c in comparisons)
    figures = {
        "tasks": tasks,
        "restarts": args.restarts,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "lawfit_first_run_seconds": first["seconds"],
        "lawfit_warm_seconds": warm["seconds"],
        "lawfit_fresh_process_seconds": fresh,
        "scipy_seconds": scipy_total,
        "ratio_warm": scipy_total / warm["seconds"],
        "ratio_fresh_process": scipy_total / fresh,
        "laws": len(comparisons),
        "lawfit_objective_at_most_scipy": int(at_least),
        "lawfit_r2_at_least_scipy_minus_0.01": int(r2_ok),
        "race": dataclasses.asdict(scalebench.RACE),
        "per_task": per_task,
        "comparisons": comparisons,
    }
    print(
        f"lawfit: first run {first['seconds']:.1f} s, warm {warm['seconds']:.1f} s, fresh process {fresh:.1f} s; "
        f"scipy {scipy_total:.1f} s -> {figures['ratio_warm']:.1f}x warm, {figures['ratio_fresh_process']:.1f}x fresh; "
        f"lawfit objective <= scipy (rel 1e-6) on {at_least}/{len(comparisons)} laws, "
        f"R^2 >= scipy's - 0.01 on {r2_ok}/{len(comparisons)}"
    )
    print(f"wrote {write('scalebench', figures)}")


if __name__ == "__main__":
    main()

"""ScaleBench's laws: lawfit's one batched job (`lawfit reproduce scalebench`) against ScaleBench's own
procedure written here (scipy L-BFGS-B on the summed squared error from uniform starts inside the
bounds, best of the same number of starts, at most 2000 iterations, per group), in one run. Prints per
task the time ratio and how many laws each side fits better (train objective, relative 1e-6).

The scipy side evaluates each law and its gradient with one jitted jax function of one start (the
benchmark uses hand-written numpy gradients; a jitted call costs ~20-50 us, like a few numpy ops).

    OPENBLAS_NUM_THREADS=1 python bench/scalebench.py [--tasks moe,parallel] [--restarts 64] [--seed-study 8]

--seed-study N: on the vocabulary task (whose laws have basins that ~1 uniform start in 100 reaches),
N independent draws of the starts on each side (scipy seed s against lawfit seed s, s < N), lawfit
with uniform and with screened starts: how often each matches or beats scipy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from common import write
from scipy.optimize import minimize

from lawfit import plan, scalebench
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


@dataclasses.dataclass(frozen=True)
class ScipyLaw:
    """The scipy procedure on one law: train objective summed over groups, and test R^2 pooled."""

    objective: float
    r2: float


def scipy_law(task: str, law_id: str, restarts: int, seed: int) -> ScipyLaw:
    law = laws.law(task, law_id)
    total, y_true, y_pred = 0.0, [], []
    for group in scalebench.groups(laws.TASKS[task]):
        x, y = scalebench._points(law, group.x_train, group.y_train)
        best, theta = scipy_fit(law, x, y, restarts, seed=seed)
        total += best
        x_test, y_test = scalebench._points(law, group.x_test, group.y_test)
        y_true.append(y_test)
        with np.errstate(all="ignore"):
            y_pred.append(np.full_like(y_test, np.nan) if theta is None else np.asarray(law.predict_raw(theta, x_test)))
    y_true, y_pred = np.concatenate(y_true), np.concatenate(y_pred)
    return ScipyLaw(total, scalebench.r_squared(y_true, y_pred) if np.isfinite(y_pred).all() else -1.0)


def passes(objective: float, r2: float, ref: ScipyLaw) -> tuple[bool, bool]:
    """(lawfit's train objective <= scipy's (rel 1e-6), its test R^2 >= scipy's - 0.01)."""
    return objective <= ref.objective * (1 + 1e-6), r2 >= ref.r2 - 0.01


def seed_study(task: str, restarts: int, n_seeds: int) -> dict:
    """lawfit (uniform and screened starts) against scipy over `n_seeds` independent draws."""
    counts = {init: {"objective": 0, "both": 0} for init in ("random", "screen")}
    per_seed = []
    for seed in range(n_seeds):
        refs = {law_id: scipy_law(task, law_id, restarts, seed) for law_id in laws.TASKS[task].laws}
        row = {"seed": seed}
        for init in counts:
            out = scalebench.run([task], restarts=restarts, seed=seed, init=init)
            checks = [passes(e["objective"], e["r2"], refs[e["law_id"]]) for e in out["laws"]]
            counts[init]["objective"] += sum(o for o, _ in checks)
            counts[init]["both"] += sum(o and r for o, r in checks)
            row[init] = [e["law_id"] for e, (o, _) in zip(out["laws"], checks, strict=True) if not o]
        per_seed.append(row)
        print(f"seed {seed}: scipy better on {row['random']} (uniform starts), {row['screen']} (screened)")
    fits = n_seeds * len(laws.TASKS[task].laws)
    print(
        f"{task}, {n_seeds} draws: objective <= scipy on "
        + ", ".join(f"{c['objective']}/{fits} ({init}, both criteria {c['both']})" for init, c in counts.items())
    )
    return {"task": task, "seeds": n_seeds, "fits": fits, "counts": counts, "scipy_better": per_seed}


def fresh_process(tasks: list[str], restarts: int, cache: str) -> float:
    """Wall time of `lawfit reproduce scalebench` in a new process (what a user waits for), with its
    compilation cache and program archive in `cache`."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "lawfit.cli", "reproduce", "scalebench", "--json", "--restarts", str(restarts)]
    env = dict(os.environ, LAWFIT_CACHE_DIR=cache)
    subprocess.run([*command, "--task", ",".join(tasks)], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", help="comma-separated task names (default: all six)")
    parser.add_argument("--restarts", type=int, default=64)
    parser.add_argument(
        "--seed-study", type=int, default=8, help="draws of the starts on the vocabulary task (0: none)"
    )
    args = parser.parse_args()
    tasks = (
        [t if t.endswith("_scaling_law") else f"{t}_scaling_law" for t in args.tasks.split(",")]
        if args.tasks
        else list(laws.TASKS)
    )

    first = scalebench.run(tasks, restarts=args.restarts)  # includes compiling (cache as it is)
    warm = scalebench.run(tasks, restarts=args.restarts)
    with tempfile.TemporaryDirectory() as cache:  # the first process fills an empty cache
        fresh_cold = fresh_process(tasks, args.restarts, cache)
        fresh = fresh_process(tasks, args.restarts, cache)
    per_task = {}
    comparisons = []
    for task in tasks:
        spec = laws.TASKS[task]
        start = time.perf_counter()
        ours = {e["law_id"]: e for e in warm["laws"] if e["task"] == task}
        better = worse = ties = 0
        for law_id in spec.laws:
            ref = scipy_law(task, law_id, args.restarts, seed=42)
            total, scipy_r2 = ref.objective, ref.r2
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
    checks = [passes(c["lawfit"], c["r2"], ScipyLaw(c["scipy"], c["scipy_r2"])) for c in comparisons]
    at_least = sum(o for o, _ in checks)
    r2_ok = sum(r for _, r in checks)
    both = sum(o and r for o, r in checks)
    figures = {
        "tasks": tasks,
        "restarts": args.restarts,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "lawfit_first_run_seconds": first["seconds"],
        "lawfit_warm_seconds": warm["seconds"],
        "lawfit_fresh_process_seconds": fresh,
        "lawfit_fresh_process_cold_cache_seconds": fresh_cold,
        "scipy_seconds": scipy_total,
        "ratio_warm": scipy_total / warm["seconds"],
        "ratio_fresh_process": scipy_total / fresh,
        "laws": len(comparisons),
        "lawfit_objective_at_most_scipy": int(at_least),
        "lawfit_r2_at_least_scipy_minus_0.01": int(r2_ok),
        "lawfit_both": int(both),
        "init": warm["init"],
        "screen_draws_per_start": plan.SCREEN_DRAWS,
        "race": dataclasses.asdict(scalebench.RACE),
        "per_task": per_task,
        "comparisons": comparisons,
    }
    print(
        f"lawfit: first run {first['seconds']:.1f} s, warm {warm['seconds']:.1f} s, fresh process {fresh:.1f} s "
        f"(empty cache {fresh_cold:.1f} s); "
        f"scipy {scipy_total:.1f} s -> {figures['ratio_warm']:.1f}x warm, {figures['ratio_fresh_process']:.1f}x fresh; "
        f"lawfit objective <= scipy (rel 1e-6) on {at_least}/{len(comparisons)} laws, "
        f"R^2 >= scipy's - 0.01 on {r2_ok}/{len(comparisons)}, both on {both}"
    )
    if args.seed_study:
        figures["seed_study"] = seed_study("vocab_scaling_law", args.restarts, args.seed_study)
    print(f"wrote {write('scalebench', figures)}")


if __name__ == "__main__":
    main()

"""Runner at scale: synthetic jobs of 1,000 / 10,000 / 100,000 Chinchilla-law fit tasks (24 points,
8 random restarts each, Huber(1e-3) on log residuals) through the streaming runner, each job in its own
process so that its peak RSS is its own; and the same fits with scipy L-BFGS-B (analytic gradient,
the same 8 starts) on a sample, for the per-fit ratio.

    python bench/scale.py                    # writes bench/results/scale.json
    python bench/scale.py --sizes 1000,10000 # a quicker run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from chinchilla_grid import scipy_objective
from common import own_cache, write
from scipy.optimize import minimize

RESTARTS = 8
N_POINTS = 24
CHUNK = 4096


def worker(n_tasks: int, out: str) -> dict:
    """One job in this process: run it, then report time, throughput, peak RSS and statuses."""
    from lawfit import cli, runner, synthetic
    from lawfit.batch import programs

    cli.enable_compile_cache()
    start = time.perf_counter()
    summary = runner.run(
        synthetic.chinchilla_tasks(n_tasks, n_points=N_POINTS, init=RESTARTS),
        out,
        total=n_tasks,
        chunk_tasks=CHUNK,
        progress=False,
    )
    seconds = time.perf_counter() - start
    # The job's own peak, before this check reads every row back (10^6 rows: ~1.2 GB more).
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = runner.read(out)
    assert rows.height == n_tasks and rows["task_hash"].n_unique() == n_tasks
    return {
        "n_tasks": n_tasks,
        "seconds": seconds,
        "fits_per_second": n_tasks / seconds,
        "chunks": summary.n_chunks_written,
        "peak_rss_mib": peak_rss,
        "statuses": dict(rows["status"].value_counts().iter_rows()),
        "mean_iterations_best_restart": float(rows["iterations"].mean()),
        "compiled_programs": programs.STATS.count,
        "compile_or_cache_load_seconds": programs.STATS.seconds,
    }


def run_job(n_tasks: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(n_tasks), out], capture_output=True, text=True, check=True
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def scipy_fits(n_sample: int) -> dict:
    """scipy L-BFGS-B from the engine's own 8 random starts of each task, one fit at a time."""
    from lawfit import kernels, synthetic
    from lawfit.plan import resolve_starts

    law = kernels.get("chinchilla")
    seconds, objectives = 0.0, []
    for task in synthetic.chinchilla_tasks(n_sample, n_points=N_POINTS, init=RESTARTS):
        _, starts = resolve_starts(law, task.init, tuple(range(law.n_params)), task.seed)
        points = pl.DataFrame({"params": task.inputs[:, 0], "tokens": task.inputs[:, 1], "value": task.target})
        fn = scipy_objective(points)
        t0 = time.perf_counter()
        best = np.inf
        for start in starts:
            with np.errstate(all="ignore"):
                out = minimize(fn, start, jac=True, method="L-BFGS-B")
            if out.success and np.isfinite(out.fun):
                best = min(best, out.fun)
        seconds += time.perf_counter() - t0
        objectives.append(best)
    return {"n_fits": n_sample, "seconds": seconds, "fits_per_second": n_sample / seconds, "objectives": objectives}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--scipy-sample", type=int, default=300)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1])))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    own_cache()  # the jobs' processes inherit it
    # Fills the persistent compilation cache with every program the jobs use (a 10^4-task job's tail
    # reaches the pool sizes that larger jobs do; a 10^3-task one compiles fewer); not reported.
    warmup = run_job(min(10_000, max(sizes)))
    jobs = [run_job(n) for n in sizes]
    baseline = scipy_fits(args.scipy_sample)
    # Same problems, same starts: does the engine reach scipy's best? (first tasks of the largest job)
    from lawfit import runner, synthetic

    with tempfile.TemporaryDirectory() as out:
        runner.run(
            synthetic.chinchilla_tasks(args.scipy_sample, n_points=N_POINTS, init=RESTARTS),
            out,
            chunk_tasks=CHUNK,
            progress=False,
        )
        engine_objective = runner.read(out)["objective"].to_numpy()
    scipy_objective_best = np.array(baseline.pop("objectives"))
    no_worse = engine_objective <= scipy_objective_best * (1 + 1e-9) + 1e-15
    for job in jobs:
        job["speedup_vs_scipy"] = job["fits_per_second"] / baseline["fits_per_second"]
    base = jobs[0]
    for job in jobs:
        job["seconds_per_fit_relative_to_smallest"] = (job["seconds"] / job["n_tasks"]) / (
            base["seconds"] / base["n_tasks"]
        )
    figures = {
        "task": f"chinchilla law, {N_POINTS} points, {RESTARTS} random restarts, huber(1e-3)-log-sum, LM",
        "chunk_tasks": CHUNK,
        "warmup_job": warmup,
        "jobs": jobs,
        "scipy_lbfgsb": baseline,
        "parity_on_scipy_sample": {"n": int(no_worse.size), "engine_no_worse_1e-9": float(no_worse.mean())},
    }
    print(json.dumps(figures, indent=1))
    path = write("scale", figures)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()

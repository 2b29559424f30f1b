"""The approach-2 bias study: lawfit's one batched job against the same IsoFLOP parabola fits done with
`numpy.polyfit` in a loop, in one run. Prints the ratio and writes bench/results/approach2_bias.json.

Both sides fit the same profiles (every design x experiment x budget) and draw the same power law
through the minima; they must agree on every recovered D*. lawfit's time is reported warm (a second
run in this process), for its first run (compiling) and for a fresh process (what a user waits for,
persistent compile cache as it is). The full study with approach 3 (the parametric law per experiment)
is timed too, in the same job as the profiles.

    OPENBLAS_NUM_THREADS=1 python bench/approach2_bias.py [--seeds 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from common import write

from lawfit import bias


def numpy_loop(noise: tuple[float, ...], seeds: int, seed: int) -> tuple[float, np.ndarray]:
    """The same simulated experiments (same draws) fitted profile by profile with numpy.polyfit."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    d_eval = []
    log_c = np.log(np.array(bias.BUDGETS))
    for design in bias.designs(noise):
        for _ in range(seeds if design.noise > 0 else 1):
            params, _, loss = design.sample(rng)
            log_d, keep = [], []
            for j in range(len(bias.BUDGETS)):
                log_n = np.log(params[j])
                x = log_n - log_n.mean()
                c2, c1, _ = np.polyfit(x, loss[j], 2)
                x_star = -c1 / (2 * c2)
                keep.append(c2 > 0 and x.min() <= x_star <= x.max())
                log_d.append(log_c[j] - np.log(6.0) - (log_n.mean() + x_star))
            keep = np.array(keep)
            if keep.sum() >= 2:
                slope, intercept = np.polyfit(log_c[keep], np.array(log_d)[keep], 1)
                d_eval.append(np.exp(intercept + slope * np.log(bias.EVALUATION_BUDGET)))
            else:
                d_eval.append(np.nan)
    return time.perf_counter() - start, np.array(d_eval)


def fresh_process(seeds: int) -> float:
    code = f"from lawfit import bias; bias.run(noise=(0.0, 0.01), seeds={seeds}, approach3=False, progress=False)"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100, help="noisy experiments per design")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (medians are quoted)")
    args = parser.parse_args()
    noise = (0.0, 0.01)

    first_start = time.perf_counter()
    bias.run(noise=noise, seeds=args.seeds, approach3=False, progress=False)  # compiles
    first_seconds = time.perf_counter() - first_start
    warm, numpy_times, fresh = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = bias.run(noise=noise, seeds=args.seeds, approach3=False, progress=False)
        warm.append(time.perf_counter() - start)
        seconds, d_numpy = numpy_loop(noise, args.seeds, seed=0)
        numpy_times.append(seconds)
        fresh.append(fresh_process(args.seeds))
    profiles = out["profile_fits"]

    # Same experiments, same fits: compare lawfit's per-design errors with the numpy loop's.
    table = bias.run(noise=noise, seeds=args.seeds, approach3=False, progress=False)["table"]
    experiments = np.array([d for d in bias.designs(noise) for _ in range(args.seeds if d.noise > 0 else 1)])
    truth = np.array([float(bias.SURFACES[d.surface].d_opt(bias.EVALUATION_BUDGET)) for d in experiments])
    err_numpy = 100 * (d_numpy / truth - 1)
    worst = 0.0
    for row in table.iter_rows(named=True):
        pick = np.array([(d.surface, d.grid, d.sampling, d.noise) == (row["surface"], row["grid"], row["sampling"],
                                                                      row["noise"]) for d in experiments])  # fmt: skip
        values = err_numpy[pick][np.isfinite(err_numpy[pick])]
        if values.size and row["d_error_approach2_mean_percent"] is not None:
            worst = max(worst, abs(float(values.mean()) - row["d_error_approach2_mean_percent"]))

    full_start = time.perf_counter()
    full = bias.run(noise=noise, seeds=args.seeds, approach3=True, progress=False)
    full_seconds = time.perf_counter() - full_start
    figures = {
        "seeds": args.seeds,
        "noise": list(noise),
        "experiments": out["experiments"],
        "profile_fits": profiles,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "lawfit_first_run_seconds": first_seconds,
        "lawfit_warm_seconds": statistics.median(warm),
        "lawfit_warm_all": warm,
        "lawfit_fresh_process_seconds": statistics.median(fresh),
        "lawfit_fresh_all": fresh,
        "numpy_polyfit_seconds": statistics.median(numpy_times),
        "numpy_all": numpy_times,
        "ratio_warm": statistics.median(numpy_times) / statistics.median(warm),
        "ratio_fresh_process": statistics.median(numpy_times) / statistics.median(fresh),
        "fits_per_second_warm": profiles / statistics.median(warm),
        "fits_per_second_numpy": profiles / statistics.median(numpy_times),
        "max_design_error_difference_points": worst,
        "with_approach3": {
            "seconds": full_seconds,
            "law_fits": full["law_fits"],
            "profile_fits": full["profile_fits"],
            "fits_per_second": (full["law_fits"] + full["profile_fits"]) / full_seconds,
        },
    }
    print(
        f"{profiles} profile fits ({out['experiments']} experiments): "
        f"lawfit warm {figures['lawfit_warm_seconds']:.3f} s "
        f"({figures['fits_per_second_warm']:.0f} fits/s), first run {first_seconds:.2f} s, fresh process "
        f"{figures['lawfit_fresh_process_seconds']:.2f} s; numpy.polyfit loop {figures['numpy_polyfit_seconds']:.3f} s "
        f"-> {figures['ratio_warm']:.1f}x warm, {figures['ratio_fresh_process']:.2f}x fresh; design errors agree to "
        f"{worst:.2e} points"
    )
    print(
        f"with approach 3: {full['law_fits']} law fits + {full['profile_fits']} profile fits in one job, "
        f"{full_seconds:.1f} s ({figures['with_approach3']['fits_per_second']:.0f} fits/s)"
    )
    print(f"wrote {write('approach2_bias', figures)}")


if __name__ == "__main__":
    main()

"""Regenerate bench/BENCHMARKS.md from bench/results/*.json.

python bench/report.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent


def machine_line(machine: dict) -> str:
    """Processor, cores, device and the jax and scipy versions of a recorded run."""
    return (
        f"Machine: {machine['processor']}, {machine['cpu_count']} cores, device `{machine['device']}`; "
        f"jax {machine['versions']['jax']}, scipy {machine['versions']['scipy']}."
    )


def chinchilla_section(result: dict) -> list[str]:
    fig, machine = result["figures"], result["machine"]
    scipy = fig["scipy_lbfgsb"]
    lines = [
        "## chinchilla_grid — Epoch's Chinchilla approach-3 problem, 4500-start grid",
        "",
        f"{machine_line(machine)} Best objective found: {fig['best_objective']:.10e}.",
        "",
        "| route | starts | seconds (warm) | compile s | ms / start | per-start speed-up vs scipy | "
        "grid-to-optimum speed-up | starts at optimum (1e-9 rel) | within 1e-6 rel |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| scipy L-BFGS-B loop, analytic gradient | {fig['n_starts']} | {scipy['seconds']:.2f} | — | "
        f"{scipy['ms_per_start']:.3f} | 1.0x | 1.0x | {scipy['fraction_at_best']:.1%} | "
        f"{scipy.get('fraction_within_1e-6', float('nan')):.1%} |",
    ]
    for key, entry in fig.items():
        if not key.startswith("engine_"):
            continue
        route = key.removeprefix("engine_").replace("_", " ")
        lines.append(
            f"| lawfit {route} | {entry['n_starts']} | {entry['seconds_warm']:.3f} | {entry['compile_seconds']:.2f} | "
            f"{entry['ms_per_start']:.3f} | {entry['per_start_speedup_vs_scipy']:.1f}x | "
            f"{entry['time_to_optimum_speedup_vs_scipy_grid']:.1f}x | {entry['fraction_at_best']:.1%} | "
            f"{entry.get('fraction_within_1e-6', float('nan')):.1%} |"
        )
    lines += [
        "",
        "Warm = best of 3 runs after the first, in the same process (persistent compilation cache on); "
        "compile s = first run minus warm run. The engine runs before the scipy loop, which runs once.",
        "",
    ]
    fresh = [(k, e["fresh_process"]) for k, e in fig.items() if k.startswith("engine_") and "fresh_process" in e]
    if fresh:
        lines += [
            "Fresh process, warm compile cache (`lawfit reproduce chinchilla --solver lm --init ...`, median of 3; "
            "for the grid, the ratios are per start too, the starts being the same 4500):",
            "",
            "| route | whole process s | import jax alone s | over import jax s | solve s (reported) | "
            "scipy grid loop / whole process | scipy grid loop / solve |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, f in fresh:
            lines.append(
                f"| lawfit {key.removeprefix('engine_').replace('_', ' ')} | {f['whole_process_seconds']:.2f} | "
                f"{f['import_jax_seconds']:.2f} | {f['over_import_jax_seconds']:.2f} | {f['solve_seconds']:.3f} | "
                f"{scipy['seconds'] / f['whole_process_seconds']:.1f}x | {scipy['seconds'] / f['solve_seconds']:.1f}x |"
            )
        lines.append("")
    return lines


def hitchhiker_section(result: dict) -> list[str]:
    fig, machine = result["figures"], result["machine"]
    lines = [
        "## hitchhiker_grid — the Hitchhiker main grid (OPT, GPT-3, T5-Pile), engine vs scipy curve_fit loop",
        "",
        machine_line(machine),
        "",
    ]
    lane_pool = fig.get("execution_layer") == "lane-pool"
    if not lane_pool and "compiled_programs" not in fig.get("study_16_starts_bootstrap", {}):
        lines += [
            "**Recorded with the previous execution layer (batch compaction), before the lane-pool engine; "
            "not rerun since.**",
            "",
        ]
    lines += [
        "| starts per cell | cells | engine s (warm) | scipy s | scipy ms / cell | "
        "speed-up | cells within 0.1 ARE points of scipy | max difference (points) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("1_start", "16_starts"):
        entry = fig[key]
        lines.append(
            f"| {entry['starts_per_cell']} | {entry['cells']} | {entry['engine_seconds_warm']:.3f} | "
            f"{entry['scipy_seconds']:.2f} | {entry['scipy_ms_per_cell']:.1f} | {entry['speedup']:.1f}x | "
            f"{entry['cells_within_0.1_points']}/{entry['cells_compared']} | {entry['max_are_difference_points']:.3g} |"
        )
    lines += [
        "",
        "Warm = best of 3 runs after a first one in the same process (every pool program compiled). "
        "The persistent compilation cache is on.",
    ]
    study = fig["study_16_starts"]
    lines += [
        "",
        f"Whole study as one job ({', '.join(study['variants'])}; {study['cells']} cells, "
        f"{study['fits'] // 16} of them fits (predict-best fits nothing), x 16 starts = {study['fits']} fits): "
        f"{study['engine_seconds_warm']:.2f} s warm, "
        f"{study['engine_fits_per_second']:.0f} fits/s against scipy's {study['scipy_fits_per_second']:.0f} fits/s.",
        "",
    ]
    boot = fig.get("study_16_starts_bootstrap")
    if boot:
        ratio = boot["engine_fits_per_second"] / boot["scipy_fits_per_second"]
        lines += [
            f"With {boot['resamples_per_cell']} bootstrap resamples per cell in the same job ({boot['cells']} cells, "
            f"{boot['fits'] // (16 * (boot['resamples_per_cell'] + 1))} of them fits, "
            f"x {boot['resamples_per_cell'] + 1} fits x 16 starts = {boot['fits']} fits; a fresh process, "
            f"{'with' if boot.get('persistent_compile_cache', True) else 'without'} the persistent compilation "
            "cache, compiles included): "
            f"{boot['engine_seconds_cold']:.0f} s, {boot['engine_fits_per_second']:.0f} fits/s against scipy's "
            f"{boot['scipy_fits_per_second']:.0f} fits/s ({ratio:.1f}x); "
            f"{boot['cells_with_interval']} cells got an ARE interval."
            + (f" ({boot['note']}.)" if boot.get("note") else ""),
            "",
        ]
    return lines


def scale_section(result: dict) -> list[str]:
    fig, machine = result["figures"], result["machine"]
    scipy = fig["scipy_lbfgsb"]
    lines = [
        "## scale — synthetic jobs of 10^3 to 10^5 fit tasks through the streaming runner",
        "",
        f"{machine_line(machine)} Task: {fig['task']}; {fig['chunk_tasks']} tasks per chunk "
        "(one Parquet file each). Each job runs in its own process (start-up and compile-cache loads "
        "included), after a warm-up job that fills the persistent compilation cache.",
        "",
        "| tasks | seconds | fits/s | speed-up vs scipy | time per fit vs smallest job | peak RSS MiB | programs "
        "compiled | statuses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for job in fig["jobs"]:
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(job["statuses"].items()))
        lines.append(
            f"| {job['n_tasks']} | {job['seconds']:.1f} | {job['fits_per_second']:.0f} | "
            f"{job['speedup_vs_scipy']:.1f}x | {job['seconds_per_fit_relative_to_smallest']:.2f} | "
            f"{job['peak_rss_mib']:.0f} | {job.get('compiled_programs', '—')} | {statuses} |"
        )
    parity = fig["parity_on_scipy_sample"]
    lines += [
        "",
        f"scipy L-BFGS-B (analytic gradient, the same 8 starts per task, one fit at a time): "
        f"{scipy['fits_per_second']:.1f} fits/s over {scipy['n_fits']} tasks. On those tasks the engine's best "
        f"objective is no worse than scipy's (1e-9 relative) on {parity['engine_no_worse_1e-9']:.1%}.",
        "",
    ]
    return lines


def scalebench_section(result: dict) -> list[str]:
    fig, machine = result["figures"], result["machine"]
    lines = [
        "## scalebench — ScaleBench's laws: one lawfit job vs the benchmark's scipy L-BFGS-B procedure",
        "",
        f"{machine_line(machine)} Tasks: {', '.join(t.removesuffix('_scaling_law') for t in fig['tasks'])}; "
        f"{fig['restarts']} starts per law and group (scipy: uniform draws in the bounds; lawfit: "
        + (
            f"one start from each of {fig['restarts']} blocks of {fig.get('screen_draws_per_start', 16)} uniform "
            "draws: the lowest objective among the draws that can move every parameter"
            if fig.get("init") == "screen"
            else "uniform draws"
        )
        + "), at most 2000 iterations / steps per start.",
        "",
        "| task | laws | scipy s | lawfit better | scipy better | same (1e-6 rel) |",
        "|---|---|---|---|---|---|",
    ]
    for task, entry in fig["per_task"].items():
        n = entry["lawfit_better"] + entry["scipy_better"] + entry["same"]
        lines.append(
            f"| {task.removesuffix('_scaling_law')} | {n} | {entry['scipy_seconds']:.1f} | {entry['lawfit_better']} | "
            f"{entry['scipy_better']} | {entry['same']} |"
        )
    lines += [
        "",
        f"lawfit, whole job: first run in the bench process {fig['lawfit_first_run_seconds']:.1f} s (compiling), "
        f"warm {fig['lawfit_warm_seconds']:.1f} s, `lawfit reproduce scalebench` in a fresh process "
        f"{fig['lawfit_fresh_process_seconds']:.1f} s"
        + (
            f" with a warm compile cache ({fig['lawfit_fresh_process_cold_cache_seconds']:.1f} s with an empty one)"
            if "lawfit_fresh_process_cold_cache_seconds" in fig
            else ""
        )
        + f"; scipy {fig['scipy_seconds']:.1f} s: "
        f"**{fig['ratio_warm']:.1f}x warm, {fig['ratio_fresh_process']:.1f}x fresh process**. "
        f"lawfit's train objective <= scipy's (rel 1e-6) on "
        f"{fig['lawfit_objective_at_most_scipy']}/{fig['laws']} laws"
        + (
            f"; test R^2 >= scipy's - 0.01 on {fig['lawfit_r2_at_least_scipy_minus_0.01']}/{fig['laws']}"
            if "lawfit_r2_at_least_scipy_minus_0.01" in fig
            else ""
        )
        + (f"; both on {fig['lawfit_both']}/{fig['laws']}" if "lawfit_both" in fig else "")
        + (
            f". Restarts raced (`lawfit.Race` every {fig['race']['every']} evaluations, factor "
            f"{fig['race']['factor']}, stall {fig['race']['stall']:g})."
            if "race" in fig
            else "."
        ),
        "",
    ]
    study = fig.get("seed_study")
    if study:
        counts = study["counts"]
        lines += [
            f"Independent draws of the starts ({study['task'].removesuffix('_scaling_law')}, scipy seed s against "
            f"lawfit seed s for s < {study['seeds']}, {study['fits']} law fits a side): lawfit's objective <= "
            f"scipy's on {counts['screen']['objective']}/{study['fits']} with screened starts (both criteria "
            f"{counts['screen']['both']}), {counts['random']['objective']}/{study['fits']} with uniform starts "
            f"(both {counts['random']['both']}).",
            "",
        ]
    return lines


def approach2_bias_section(result: dict) -> list[str]:
    fig, machine = result["figures"], result["machine"]
    full = fig["with_approach3"]
    return [
        "## approach2_bias — the approach-2 bias study: one lawfit job vs a numpy.polyfit loop",
        "",
        f"{machine_line(machine)} {fig['experiments']} simulated experiments (36 designs noise-free, "
        f"{fig['seeds']} noisy draws of each at noise sd {fig['noise'][-1]:g}), {fig['profile_fits']} IsoFLOP "
        "profile parabolas, the same draws on both sides; medians of the repeats.",
        "",
        "| route | seconds | profile fits / s |",
        "|---|---|---|",
        f"| numpy.polyfit loop (single-threaded) | {fig['numpy_polyfit_seconds']:.3f} | "
        f"{fig['fits_per_second_numpy']:.0f} |",
        f"| lawfit, warm process | {fig['lawfit_warm_seconds']:.3f} | {fig['fits_per_second_warm']:.0f} |",
        f"| lawfit, first run in the process (compiling) | {fig['lawfit_first_run_seconds']:.2f} | — |",
        f"| lawfit, fresh process (whole process) | {fig['lawfit_fresh_process_seconds']:.2f} | — |",
        "",
        f"Ratio (numpy / lawfit): **{fig['ratio_warm']:.2f}x warm, {fig['ratio_fresh_process']:.2f}x fresh process**. "
        f"Per-design mean errors of D* agree to {fig['max_design_error_difference_points']:.1e} percentage points. "
        f"With approach 3 in the same job ({full['law_fits']} parametric-law fits, screened starts): "
        f"{full['seconds']:.1f} s, {full['fits_per_second']:.0f} fits/s.",
        "",
    ]


SECTIONS = {
    "approach2_bias": approach2_bias_section,
    "chinchilla_grid": chinchilla_section,
    "hitchhiker_grid": hitchhiker_section,
    "scale": scale_section,
    "scalebench": scalebench_section,
}


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python bench/report.py` from `bench/results/*.json`; "
        "every figure below comes from one run of the named script.",
        "",
    ]
    for path in sorted((HERE / "results").glob("*.json")):
        result = json.loads(path.read_text())
        section = SECTIONS.get(result["benchmark"])
        if section:
            lines += section(result)
    notes = HERE / "NOTES.md"  # hand-written context for the runs (disturbed, not scripted, compared)
    if notes.exists():
        lines += ["", notes.read_text().rstrip(), ""]
    (HERE / "BENCHMARKS.md").write_text("\n".join(lines))
    print("wrote", HERE / "BENCHMARKS.md")


if __name__ == "__main__":
    main()

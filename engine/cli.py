"""The `lawfit` command line."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np

SOLVER_HELP = (
    "batched solver (lm: Levenberg-Marquardt on the residuals; lbfgs: Optax L-BFGS with a per-lane line search)"
)


def enable_compile_cache() -> None:
    """Persistent XLA compilation cache and program archive, so repeated jobs neither retrace nor
    recompile."""
    import jax

    from .batch import archive, warm

    cache = warm.cache_directory()
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    archive.enable(warm.programs_directory())


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


def _reproduce(args) -> int:
    from . import reproduce

    if args.name == "hitchhiker":
        return _reproduce_hitchhiker(args)
    if args.name == "scalebench":
        return _reproduce_scalebench(args)
    if args.name == "compute-optimal":
        return _reproduce_compute_optimal(args)
    if args.name == "approach2-bias":
        return _reproduce_bias(args)
    if args.name == "porian":
        return _reproduce_porian(args)
    if args.name in ("overtraining", "datablations"):
        out = getattr(reproduce, args.name)(solver=args.solver)
        if args.json:
            print(json.dumps(out))
        else:
            (_print_overtraining if args.name == "overtraining" else _print_datablations)(out)
        return 0
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap: expected a number of resamples >= 0, got {args.bootstrap}")
    out = reproduce.chinchilla(
        solver=args.solver, init=args.init, varpro_starts=args.varpro_starts, bootstrap=args.bootstrap, seed=args.seed
    )
    if args.json:
        print(json.dumps(out))
        return 0
    ref = out["reference"]
    print(f"Chinchilla approach 3 refit ({out['n_points']} points, Huber(1e-3) sum on log residuals)")
    rows = [
        (k, f"{out[k]:.6g}   (Epoch grid best {ref[k]:.6g})") for k in ("A", "B", "E", "alpha", "beta", "objective")
    ]
    rows += [
        ("status", out["status"]),
        ("starts", f"{out['n_starts']} ({args.init}), {out['n_at_best']} at the best objective"),
        ("solver", out["solver"]),
        ("seconds", f"{out['seconds']:.3f} on {out['devices']} {out['device']} device(s)"),
    ]
    if args.bootstrap:
        boot = out["bootstrap"]
        for name, (low, high) in out["intervals"].items():
            ref = out["reference_intervals"].get(name)
            rows.append(
                (f"{name} 95%", f"[{low:.4g}, {high:.4g}]" + (f"   (Epoch [{ref[0]}, {ref[1]}])" if ref else ""))
            )
        rows.append(
            ("bootstrap", f"{boot['n_converged']}/{boot['n_resamples']} resamples converged, {boot['seconds']:.2f} s")
        )
    _print_table(rows)
    return 0


def _reproduce_scalebench(args) -> int:
    from . import scalebench

    tasks = [t.strip() for t in args.task.split(",")] if args.task else None
    tasks = [t if t.endswith("_scaling_law") else f"{t}_scaling_law" for t in tasks] if tasks else None
    out = scalebench.run(
        tasks, restarts=args.restarts, seed=args.seed, init=args.starts, solver=args.solver, progress=None
    )
    if args.json:
        print(json.dumps(out))
        return 0
    by_task: dict[str, list[dict]] = {}
    for entry in out["laws"]:
        by_task.setdefault(entry["task"], []).append(entry)
    for task, entries in by_task.items():
        r2 = np.array([e["r2"] for e in entries])
        print(
            f"{task}: test R^2 mean {r2.mean():.3f} +- {r2.std():.3f} (ScaleBench 'All Data': "
            f"{scalebench.PUBLISHED_R2[task]})"
        )
        for e in entries:
            params = ", ".join(
                f"{g['group']}: " + " ".join(f"{v:.4g}" for v in g["params"]) if g["params"] else f"{g['group']}: -"
                for g in e["groups"]
            )
            print(f"  {e['law_id']:>5}  R^2 {e['r2']:+.4f}  objective {e['objective']:.6g}  {e['status']}  [{params}]")
    print(
        f"{out['n_fits']} fits ({out['n_laws']} laws x groups) x {out['restarts']} starts ({out['init']}) "
        f"in {out['seconds']:.1f} s"
    )
    return 0


def _resamples(args, default: int) -> int:
    """--bootstrap of a reproduction, 0 meaning its default."""
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap: expected a number of resamples >= 0, got {args.bootstrap}")
    return args.bootstrap or default


def _reproduce_compute_optimal(args) -> int:
    from . import reproduce

    out = reproduce.compute_optimal(bootstrap=_resamples(args, 200), seed=args.seed)
    report = out.pop("report")
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    print(
        f"Compute-optimal allocation on Epoch's Chinchilla points ({out['n_points']} points; {out['n_on_budgets']} "
        f"within {out['tolerance']:.0%} of Chinchilla's nine IsoFLOP budgets), {out['bootstrap']} bootstrap resamples"
    )
    for row in out["approaches"]:
        extra = f"; Epoch's refit gives a = {row['epoch_a']:.3f}" if "epoch_a" in row else ""
        print(
            f"  approach {row['approach']} ({row['method']}): {_exponent_text(row)}   "
            f"(Chinchilla: a = {row['published_a']:.2f}, b = {row['published_b']:.2f}{extra})"
        )
    _print_profiles(report.profiles)
    _print_predictions(report.predictions)
    print(f"{out['fits']} fits in one job ({out['seconds']:.1f} s)")
    return 0


def _reproduce_porian(args) -> int:
    from . import reproduce

    out = reproduce.porian(bootstrap=_resamples(args, 100), seed=args.seed)
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    print(
        f"Approach 2 on Porian et al.'s IsoFLOP points ({out['n_points']} points, {len(out['settings'])} settings), "
        f"{out['bootstrap']} bootstrap resamples; a = exponent of N*(C), 95 % intervals"
    )
    window = f"window {out['window']:g}x"
    print(f"  {'setting':34s} {'whole-profile parabola':>24s} {window:>24s}  published")

    def cell(fit: dict) -> str:
        return f"{fit['a']:.3f} [{fit['a_low']:.3f}, {fit['a_high']:.3f}]" if fit["a"] is not None else fit["status"]

    for s in out["settings"]:
        p = s["published"]
        print(
            f"  {s['family']:34s} {cell(s['global']):>24s} {cell(s['window']):>24s}  "
            f"{p['a']:.3f} [{p['a_low']:.3f}, {p['a_high']:.3f}]"
        )
    print(f"{out['fits']} fits in two batched jobs ({out['seconds']:.1f} s)")
    return 0


def _reproduce_bias(args) -> int:
    from . import bias

    if args.seeds < 2:
        raise ValueError(f"--seeds: expected at least 2 noisy experiments per design, got {args.seeds}")
    out = bias.run(noise=(0.0, args.noise), seeds=args.seeds, seed=args.seed, progress=None)
    table = out.pop("table")
    plot = bias.plot(table, Path(args.plot) / "approach2_bias.png") if args.plot else None
    if args.json:
        print(json.dumps(out | {"table": table.to_dicts(), "plot": str(plot) if plot else None}))
        return 0
    print(
        "Approach 2 bias (Open-Athena designs): error of D* at 1e24 FLOPs (%), five budgets 1e17..1e21, "
        f"{bias.POINTS_PER_PROFILE} sizes a profile; noise sd {args.noise:g} over {args.seeds} experiments a design"
    )
    print(
        f"{'surface':<11}{'sampling':<12}{'grid':<5}{'all vertices':>13}{'published':>10}{'edge dropped':>13}"
        f"{'noisy A2 mean+-sd':>20}{'noisy A3 mean+-sd':>20}"
    )
    exact = table.filter(table["noise"] == 0)
    noisy = {
        (r["surface"], r["sampling"], r["grid"]): r for r in table.filter(table["noise"] > 0).iter_rows(named=True)
    }
    fmt = lambda v: "-" if v is None else f"{v:+.2f}"  # noqa: E731
    for row in exact.iter_rows(named=True):
        other = noisy.get((row["surface"], row["sampling"], row["grid"]), {})
        a2 = f"{fmt(other.get('d_error_approach2_mean_percent'))} +- {fmt(other.get('d_error_approach2_sd_percent'))}"
        a3 = f"{fmt(other.get('d_error_approach3_mean_percent'))} +- {fmt(other.get('d_error_approach3_sd_percent'))}"
        print(
            f"{row['surface']:<11}{row['sampling']:<12}{row['grid']:<5}"
            f"{fmt(row['d_error_extrapolated_vertices_mean_percent']):>13}{fmt(row['article_d_error_percent']):>10}"
            f"{fmt(row['d_error_approach2_mean_percent']):>13}{a2:>20}{a3:>20}"
        )
    print(
        f"{out['experiments']} experiments: {out['profile_fits']} profile fits and {out['law_fits']} law fits in "
        f"one job, {out['seconds']:.1f} s ({out['fits_per_second']:.0f} fits/s)" + (f"; plot {plot}" if plot else "")
    )
    return 0


def _exponent_text(row: dict) -> str:
    if row.get("a") is None:
        return f"{row['status']}: {row.get('message')}"

    def interval(name: str) -> str:
        low, high = row.get(f"{name}_low"), row.get(f"{name}_high")
        return f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""

    used = f", {row['budgets_used']} budgets" if row.get("budgets_used") else ""
    return f"a = {row['a']:.3f}{interval('a')}  b = {row['b']:.3f}{interval('b')}{used}"


def _print_profiles(profiles) -> None:
    if profiles.height == 0:
        return
    print("  IsoFLOP profiles (approach 2):")
    for row in profiles.iter_rows(named=True):
        interval = (
            f" [{row['n_opt_low']:.3g}, {row['n_opt_high']:.3g}]"
            if row["n_opt_low"] is not None and np.isfinite(row["n_opt_low"])
            else ""
        )
        best = f"N* = {row['n_opt']:.3g}{interval}  L* = {row['l_opt']:.4f}" if row["status"] == "ok" else ""
        print(f"    C = {row['budget']:.3g}: {row['n_points']:>3} points  {row['status']:<14} {best}")


def _print_predictions(predictions) -> None:
    for row in predictions.iter_rows(named=True):
        if row["n_opt"] is None:
            continue
        interval = f" [{row['n_opt_low']:.3g}, {row['n_opt_high']:.3g}]" if row["n_opt_low"] is not None else ""
        loss = f"  L* = {row['l_opt']:.4f}" if row["l_opt"] is not None else ""
        print(
            f"  approach {row['approach']} at C = {row['budget']:.3g}: N* = {row['n_opt']:.3g}{interval}  "
            f"D* = {row['d_opt']:.3g}{loss}"
        )


def _optimal(args) -> int:
    from lawfit.data.readers import read_observations

    from . import datasets, optimal
    from .plots import optimal_plots

    if (args.file is None) == (args.dataset is None):
        raise ValueError("lawfit optimal: give a FILE or --dataset NAME (one of them)")
    frame = datasets.load(args.dataset) if args.dataset else read_observations(args.file, args.map)
    approaches = tuple(int(a) for a in args.approach.split(",") if a.strip())
    budgets = None
    if args.budgets == "chinchilla":
        budgets = optimal.CHINCHILLA_BUDGETS
    elif args.budgets not in (None, "auto"):
        budgets = [float(b) for b in args.budgets.split(",")]
    at = tuple(float(b) for b in args.budget.split(",")) if args.budget else ()
    group_by = tuple(c.strip() for c in args.group_by.split(",") if c.strip() and c.strip() in frame.columns)
    report = optimal.optimal(
        frame,
        approaches=approaches,
        group_by=group_by,
        budgets=budgets,
        tolerance=args.tolerance,
        bootstrap=args.bootstrap,
        at=at,
        min_points=args.min_points,
        window=args.window,
        seed=args.seed,
        progress=False if args.quiet or args.json else None,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("exponents", "predictions", "profiles", "envelope", "points"):
        table = getattr(report, name)
        if table.height:
            table.write_parquet(out / f"{name}.parquet")
    plots, plot_note = [], None
    if not args.no_plot:
        try:
            plots = optimal_plots(report, out, group_by, at)
        except Exception as err:  # noqa: BLE001 - a plot never costs the summary
            plot_note = f"plots skipped: {str(err).strip() or type(err).__name__}"
    if args.json:
        payload = {name: getattr(report, name).to_dicts() for name in ("exponents", "predictions", "profiles")}
        payload["notes"] = report.notes
        print(json.dumps(payload | {"plots": [str(p) for p in plots], "plot_note": plot_note}, default=str))
        return 0
    for note in report.notes:
        print(f"note: {note}")
    off = int((report.budgets.index < 0).sum())
    if 2 in approaches:
        print(
            f"{report.budgets.centres.size} IsoFLOP budget(s) ({'declared' if budgets else 'found in the data'}, "
            f"tolerance {report.budgets.tolerance:.0%}); {off} of {report.points.height} rows on none"
        )
    for key, rows in _by_group(report.exponents, group_by):
        print(", ".join(f"{k}={v}" for k, v in key.items()) or "all rows")
        for row in rows:
            print(f"  approach {row['approach']} ({row['method']}): {_exponent_text(row)}")
        _print_profiles(optimal.group_rows(report.profiles, key))
        _print_predictions(optimal.group_rows(report.predictions, key))
    if plot_note:
        print(f"note: {plot_note}")
    print(f"{report.fits} fits; wrote {out}/*.parquet and {len(plots)} plot(s)")
    return 0


def _by_group(table, group_by: tuple[str, ...]):
    if table.height == 0:
        return []
    if not group_by:
        return [({}, table.to_dicts())]
    parts = table.partition_by(list(group_by), as_dict=True, maintain_order=True)
    return [(dict(zip(group_by, k, strict=True)), part.to_dicts()) for k, part in parts.items()]


def _print_overtraining(out: dict) -> None:
    print("Gadre et al. 2024 (over-training): loss law per corpus fitted on the small models, then the")
    print("error law (17-task top-1 error from loss); extrapolated to the larger over-trained models")
    for corpus, fit in out["corpora"].items():
        params = " ".join(f"{k}={v:.6g}" for k, v in fit["params"].items())
        down = " ".join(f"{k}={v:.6g}" for k, v in fit["downstream"].items() if k != "status")
        print(f"{corpus}: loss law {fit['status']} on {fit['n_points']} points; {params}")
        print(f"  error law {fit['downstream']['status']}; {down}")
        for target, got in fit["targets"].items():
            ref = out["reference"].get(corpus, {}).get(target, {})
            for name, label in (("loss", "C4 loss"), ("err17", "17-task error")):
                published = f"   (paper {100 * ref[name]:.2f}%)" if name in ref else "   (no published figure)"
                print(
                    f"  {target} {label}: measured {got[name]:.4f}, predicted {got[name + '_predicted']:.4f}, "
                    f"relative error {100 * got[name + '_relative_error']:.2f}%{published}"
                )
    print(f"solver {out['solver']}, {out['seconds']:.2f} s")


def _print_datablations(out: dict) -> None:
    ref = out["reference"]
    print(f"Muennighoff et al. 2023 (data-constrained law) on the paper's {out['n_points']} runs, Chinchilla terms")
    print(f"frozen at the authors' values; Huber(1e-3) sum on log residuals from their {out['n_starts']}-start grid")
    _print_table(
        [
            ("R_D*", f"{out['R_D_star']:.6g}   (paper {ref['r_d']:.6g})"),
            ("R_N*", f"{out['R_N_star']:.6g}   (paper {ref['r_n']:.6g})"),
            ("objective", f"{out['huber_sum']:.7g}   (paper's point {ref['huber_sum']:.7g})"),
            ("R^2", f"{out['r2']:.4f}   (paper {ref['r2']:.4f})"),
            ("status", out["status"]),
        ]
    )
    print("local optima found from the grid (best first):")
    for item in out["local_optima"]:
        print(
            f"  R_D*={item['R_D_star']:8.4g}  R_N*={item['R_N_star']:6.4g}  objective {item['huber_sum']:.7g}  "
            f"R^2 {item['r2']:.4f}  ({item['n_starts']} start(s), {item['status']})"
        )
    if out["huber_sum"] < ref["huber_sum"]:
        print(
            f"note: lawfit's optimum has a lower objective ({out['huber_sum']:.7g}) than the paper's point "
            f"({ref['huber_sum']:.7g}); the paper's R_D*={ref['r_d']:.4g} is one of the local optima above "
            "(the objective is nearly flat in R_D*, so the data do not pin it down)"
        )
    print(f"solver {out['solver']}, {out['seconds']:.2f} s")


def _data_list(args) -> int:
    from . import datasets

    table = datasets.list()
    if args.json:
        print(json.dumps(table.to_dicts()))
    else:
        for row in table.to_dicts():
            summary = f"{row['rows']} rows, {row['families']} families, {row['models']} models; {row['licence']}"
            print(f"{row['name']}  {summary}")
            counts = ", ".join(f"{item['family']}={item['models']}" for item in row["family_models"])
            print(textwrap.fill(counts, 110, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False))
    return 0


def _data_show(args) -> int:
    import polars as pl

    from . import datasets

    frame = datasets.load(args.name)
    if args.family:
        if args.family not in frame["family"].unique().to_list():
            raise ValueError(f"dataset {args.name!r} has no family {args.family!r}")
        frame = frame.filter(pl.col("family") == args.family)
    summary = (
        frame.group_by("family", maintain_order=True)
        .agg(
            pl.col("run_id").n_unique().alias("models"),
            pl.len().alias("rows"),
            pl.col("metric").n_unique().alias("metrics"),
            pl.col("params").min().alias("params_min"),
            pl.col("params").max().alias("params_max"),
            pl.col("tokens").min().alias("tokens_min"),
            pl.col("tokens").max().alias("tokens_max"),
        )
        .sort("family")
    )
    if args.json:
        print(json.dumps(summary.to_dicts()))
    else:
        with pl.Config(tbl_rows=200, tbl_cols=10):
            print(summary)
    return 0


def _data_check(args) -> int:
    from lawfit.data import find_issues, parse_mapping, read_table, to_observations
    from lawfit.data.readers import mapping_issues

    # Every problem at once: the mapping's, then the rows' under the usable part of the mapping.
    raw, mapping = read_table(args.file), parse_mapping(args.map)
    issues = mapping_issues(raw, mapping)
    broken = {issue.column for issue in issues}
    usable = {name: source for name, source in mapping.items() if name not in broken and source not in broken}
    frame = to_observations(raw, usable)
    lost = {name for name, source in mapping.items() if name not in usable}
    row_issues, _ = find_issues(frame)
    issues += [i for i in row_issues if not (i.problem == "missing required column" and i.column in lost)]
    if args.json:
        print(json.dumps({"rows": frame.height, "problems": [str(i) for i in issues]}))
    elif issues:
        print(f"{args.file}: {len(issues)} problem(s) in {frame.height} rows")
        for issue in issues:
            print(f"  - {issue}")
    else:
        print(f"{args.file}: {frame.height} rows, no problems")
    return 1 if issues else 0


def _data_convert(args) -> int:
    from lawfit.data import conform, read_observations, validate

    frame = read_observations(args.file, args.map)
    frame, report = validate(frame, on_invalid=args.on_invalid)
    frame = conform(frame)
    frame.write_parquet(args.out, compression="zstd")
    print(f"wrote {args.out}: {report.rows_out} rows ({report.dropped} dropped)")
    return 0


def _reproduce_hitchhiker(args) -> int:
    from . import datasets, hitchhiker

    variants = tuple(v.strip() for v in args.variant.split(",")) if args.variant else tuple(hitchhiker.VARIANTS)
    unknown = [v for v in variants if v not in hitchhiker.VARIANTS]
    if unknown:
        raise ValueError(f"--variant: unknown {unknown}; expected some of {list(hitchhiker.VARIANTS)}")
    families = tuple(f.strip() for f in args.family.split(",")) if args.family else None
    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap: expected a number of resamples >= 0, got {args.bootstrap}")
    cells, seconds = hitchhiker.run(
        datasets.load("hitchhiker"),
        families=families,
        variants=variants,
        solver=args.solver,
        bootstrap=args.bootstrap,
        seed=args.seed,
        progress=False if args.json else None,
    )
    if args.out:
        import polars as pl

        Path(args.out).mkdir(parents=True, exist_ok=True)
        pl.DataFrame(cells, infer_schema_length=None).write_parquet(Path(args.out) / "results.parquet")
    plots = []
    if args.plot:
        from .plots import are_heatmaps

        for variant in variants:
            plots += are_heatmaps(cells, args.plot, variant)
    if args.json:
        print(json.dumps({"cells": cells, "n_cells": len(cells), "seconds": seconds, "plots": [str(p) for p in plots]}))
        return 0
    import polars as pl

    table = pl.DataFrame(cells)
    summary = table.group_by("variant", "family", maintain_order=True).agg(
        pl.len().alias("cells"),
        (pl.col("status") == "converged").sum().alias("converged"),
        pl.col("are_percent").median().alias("median_are_percent"),
    )
    with pl.Config(tbl_rows=100):
        print(summary)
    print(f"{len(cells)} cells in {seconds:.2f} s; {len(plots)} heatmap(s) written")
    return 0


def _fit(args) -> int:
    from lawfit import kernels
    from lawfit.data.readers import parse_mapping, read_observations

    from . import fitjob
    from .plots import fit_plots

    laws = tuple(name.strip() for name in (args.law or "").split(",") if name.strip())
    for name in laws:
        kernels.get(name)  # unknown law: one-line error before any work
    written = _formula_laws(args)
    for law in written:
        kernels.register(law)  # the job refers to laws by name
    laws += tuple(law.name for law in written)
    if not laws:
        raise ValueError("lawfit fit: give --law NAME, --formula EXPR or --law-file FILE")
    frame = read_observations(args.file, args.map)
    if args.delta <= 0:
        raise ValueError(f"--delta: expected a positive number, got {args.delta}")
    job = fitjob.FitJob(
        laws=laws,
        group_by=tuple(c.strip() for c in args.group_by.split(",") if c.strip()),
        objective=args.objective,
        delta=args.delta,
        restarts=args.restarts,
        solver=args.solver,
        bootstrap=args.bootstrap,
        holdout=args.holdout,
        seed=args.seed,
        chunk_tasks=args.chunk,
    )
    share = _share(args)
    out = Path(args.out)
    results, points, notes = fitjob.run(
        frame, job, progress=False if args.quiet or args.json else None, parts=out / "parts", share=share
    )
    if not share.lead:  # process 0 writes the assembled results
        return 0
    results.write_parquet(out / "results.parquet")
    points.write_parquet(out / "points.parquet")
    if written:  # `lawfit predict/plot OUT` rebuild the formula laws from here
        (out / "laws.json").write_text(json.dumps([kernels.formula.spec(law) for law in written], indent=1))
    columns = parse_mapping(args.map)
    (out / "columns.json").write_text(json.dumps(columns))  # `lawfit plot` labels axes with the user's names
    plots, plot_note = [], None
    if not args.no_plot:
        try:  # a plot that cannot be drawn never costs the fit's summary
            plots = fit_plots(points, results, job.group_by, out, columns=columns)
        except Exception as err:  # noqa: BLE001
            plot_note = f"plots skipped: {str(err).strip() or type(err).__name__}"
    if args.json:
        payload = {"results": results.drop("job").to_dicts(), "notes": notes, "out": str(out)}
        print(json.dumps(payload | {"plots": [str(p) for p in plots], "plot_note": plot_note}, default=str))
        return 0
    for note in notes:
        print(f"note: {note}")
    _print_results(results, job)
    if plot_note:
        print(f"note: {plot_note}")
    print(f"wrote {out / 'results.parquet'}, {out / 'points.parquet'} and {len(plots)} plot(s)")
    return 0


def _formula_laws(args) -> list:
    """The laws of `--formula` (inputs: `--inputs`, else the formula's names that are columns of the
    file or `--map` names) and of `--law-file`."""
    from lawfit import kernels
    from lawfit.data.readers import parse_mapping, read_table
    from lawfit.kernels import formula

    laws = kernels.laws_from_file(args.law_file) if args.law_file else []
    if args.formula:
        if args.inputs:
            inputs = [x.strip() for x in args.inputs.split(",") if x.strip()]
        else:
            columns = set(read_table(args.file).columns) | set(parse_mapping(args.map))
            names = formula.parse(args.formula).names
            inputs = [name for name in names if name in columns]
            if not inputs:
                raise ValueError(
                    f"--formula {args.formula!r}: none of its names {list(names)} is a column of {args.file} "
                    "or a --map name; name the inputs with --inputs"
                )
        laws.append(
            kernels.from_formula(
                args.formula,
                inputs=inputs,
                bounds=formula.parse_bounds(args.bounds),
                starts=formula.parse_starts(args.starts),
                name=args.name,
            )
        )
    elif args.bounds or args.starts or args.inputs:
        raise ValueError("--bounds, --starts and --inputs describe a --formula; give one")
    return laws


def _leaderboard(args) -> int:
    import polars as pl

    from . import datasets, leaderboard
    from .holdout import Holdout
    from .types import Objective

    if args.file:
        from lawfit.data.readers import read_observations

        frame, title = read_observations(args.file, args.map), Path(args.file).name
    else:
        frame, title = datasets.load(args.dataset), args.dataset
    objective = Objective.parse(args.objective, delta=args.delta)
    spec = leaderboard.Leaderboard(
        laws=() if args.laws == "all" else tuple(n.strip() for n in args.laws.split(",") if n.strip()),
        families=tuple(f.strip() for f in args.families.split(",")) if args.families else (),
        metric=args.metric,
        holdout=Holdout(axis=args.axis, min_train=args.min_train, max_windows=args.max_windows),
        objective=objective,
        solver=args.solver,
        max_steps=args.max_steps,
    )
    if args.max_steps < 1:
        raise ValueError(f"--max-steps: expected >= 1, got {args.max_steps}")
    out = leaderboard.run(
        frame,
        spec,
        args.out,
        title=title,
        chunk_tasks=args.chunk,
        progress=False if args.quiet or args.json else None,
        share=_share(args),
        plot=not args.no_plot,
    )
    if "overall" not in out:  # not process 0 of a distributed job
        return 0
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    with pl.Config(tbl_rows=50, tbl_cols=10):
        print(pl.DataFrame(out["overall"]))
    resumed = f", {out['resumed']} resumed from {args.out}" if out["resumed"] else ""
    print(
        f"{out['tasks']} fits ({out['families']} families x windows x {len(out['laws'])} laws{resumed}) "
        f"in {out['seconds']:.1f} s; wrote {Path(args.out) / 'leaderboard.md'}"
    )
    return 0


def _read_results(arg: str):
    """(path, table) of a results.parquet given as the file or the --out folder holding it."""
    import polars as pl

    path = Path(arg)
    if path.is_dir():
        path = path / "results.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no such results file: {path}")
    saved = path.parent / "laws.json"
    if saved.exists():  # formula laws of `lawfit fit --formula/--law-file`
        from lawfit import kernels

        for spec in json.loads(saved.read_text()):
            kernels.register(kernels.formula.from_spec(spec))
    try:
        return path, pl.read_parquet(path)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"cannot read {path} as parquet: {str(err).splitlines()[0]}") from err


def _plot(args) -> int:
    import polars as pl

    from . import plots

    path, table = _read_results(args.results)
    out = Path(args.out) if args.out else path.parent
    columns = set(table.columns)
    if {"family", "k", "cut", "law", "are_percent"} <= columns:
        written = [plots.leaderboard_plot(table, out / "leaderboard.png")]
    elif {"variant", "family", "k", "q", "are_percent"} <= columns:
        written = [p for v in table["variant"].unique().to_list() for p in plots.are_heatmaps(table.to_dicts(), out, v)]
    elif {"law", "theta"} <= columns:
        points_path = path.parent / "points.parquet"
        if not points_path.exists():
            raise FileNotFoundError(f"{path} is a `lawfit fit` result; its plots need {points_path}")
        group_by = tuple(table.columns[: table.columns.index("law")])
        names = path.parent / "columns.json"
        columns = json.loads(names.read_text()) if names.exists() else None
        written = plots.fit_plots(pl.read_parquet(points_path), table, group_by, out, columns=columns)
    else:
        raise ValueError(
            f"{path}: not a lawfit results file (expected the output of `lawfit fit`, `lawfit leaderboard` "
            "or hitchhiker cells)"
        )
    for item in written:
        print(item)
    return 0


def _share(args):
    """Checks the runner flags; this process's share of the job: all of it, or its part of a
    `--distributed` run."""
    from .cluster import ALONE, connect

    if args.chunk < 1:
        raise ValueError(f"--chunk: expected a number of tasks >= 1, got {args.chunk}")
    if not args.distributed:
        return ALONE
    return connect(args.coordinator, args.num_processes, args.process_id)


def _add_runner_flags(parser: argparse.ArgumentParser, chunk: int = 2048) -> None:
    parser.add_argument(
        "--chunk", type=int, default=chunk, help="tasks per result file; a rerun with the same --out resumes"
    )
    parser.add_argument("--distributed", action="store_true", help="share the job with other processes/hosts")
    parser.add_argument("--coordinator", help="host:port of process 0 (else $LAWFIT_COORDINATOR)")
    parser.add_argument("--num-processes", type=int, help="processes in the job (else $LAWFIT_NUM_PROCESSES)")
    parser.add_argument("--process-id", type=int, help="this process's id (else $LAWFIT_PROCESS_ID)")


def _print_results(results, job) -> None:
    """One line per group x law in natural parameters (A, B, E, alpha, ...), the law's formula once."""
    from lawfit import kernels

    for name in results["law"].unique(maintain_order=True).to_list():
        print(f"{name}: {kernels.get(name).formula}")
    for row in results.to_dicts():
        law = kernels.get(row["law"])
        group = ", ".join(f"{k}={row[k]}" for k in job.group_by) or "all rows"
        parts = []
        for name in law.natural_names:
            text = f"{name}={row[name]:.6g}" if row.get(name) is not None else f"{name}=?"
            if job.bootstrap and row.get(f"{name}_lo") is not None and np.isfinite(row[f"{name}_lo"]):
                text += f" [{row[f'{name}_lo']:.4g}, {row[f'{name}_hi']:.4g}]"
            parts.append(text)
        extra = f", held-out ARE {row['holdout_are_percent']:.2f}%" if row["holdout_are_percent"] is not None else ""
        message = f" ({row['message']})" if row["message"] else ""
        print(f"  [{group}] {law.name}: {row['status']}{message}; {' '.join(parts)}{extra}")


def _predict(args) -> int:
    import polars as pl

    from . import fitjob

    path, results = _read_results(args.results)
    if "theta" not in results.columns or "law" not in results.columns:
        raise ValueError(f"{path} is not a lawfit results file (needs columns 'law' and 'theta')")
    given = (("params", args.params), ("tokens", args.tokens), ("flops", args.flops))
    values = {k: v for k, v in given if v is not None}
    for part in filter(None, (p.strip() for p in (args.at or "").split(","))):
        name, eq, number = part.partition("=")
        try:
            values[name.strip()] = float(number)
        except ValueError:
            raise ValueError(f"--at: expected NAME=NUMBER pairs like 'N=1e9,D=2e10', got {part!r}") from None
        if not eq or not name.strip():
            raise ValueError(f"--at: expected NAME=NUMBER pairs like 'N=1e9,D=2e10', got {part!r}")
    if not values and args.budget is None:
        raise ValueError(
            "predict: give --params/--tokens (or --flops, or --at for any input) to predict at, or --budget"
        )
    table = fitjob.predict(results, values, flops_budget=args.budget)
    if args.json:
        print(json.dumps(table.to_dicts(), default=str))
    else:
        with pl.Config(tbl_rows=500, tbl_cols=20, fmt_str_lengths=60):
            print(table)
    return 0


class _ShowDefaults(argparse.HelpFormatter):
    """Help lines end with the flag's default, where it has one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if shown and "%(default)" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    from . import solvers
    from .plan import SCREEN_DRAWS

    parser = argparse.ArgumentParser(prog="lawfit", description="Fit scaling laws in bulk.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, formatter_class=_ShowDefaults, **k)

    rep = sub.add_parser("reproduce", help="reproduce a published fit on the bundled data")
    rep.add_argument(
        "name",
        choices=[
            "chinchilla",
            "hitchhiker",
            "overtraining",
            "datablations",
            "scalebench",
            "compute-optimal",
            "approach2-bias",
            "porian",
        ],
        help="chinchilla: Epoch's refit of approach 3; hitchhiker: Choshen et al.'s ARE heatmaps; overtraining: "
        "Gadre et al.'s extrapolations; datablations: Muennighoff et al.'s R_D*, R_N*; scalebench: every law of "
        "six ScaleBench tasks, test R^2; compute-optimal: Chinchilla approaches 2 and 3 with intervals; "
        "approach2-bias: the Open-Athena approach-2 bias designs on synthetic surfaces; porian: approach 2 on "
        "Porian et al.'s IsoFLOP points, beside their exponents",
    )
    rep.add_argument("--task", help="scalebench: tasks (comma-separated, e.g. moe,parallel); default all six")
    rep.add_argument("--restarts", type=int, default=64, help="scalebench: starts per law (and group)")
    rep.add_argument(
        "--starts",
        choices=["screen", "random"],
        default="screen",
        help=f"scalebench: one start from each of --restarts blocks of {SCREEN_DRAWS} uniform draws in the bounds "
        "(screen), or --restarts uniform draws as the benchmark's own fitter (random)",
    )
    rep.add_argument("--seeds", type=int, default=100, help="approach2-bias: noisy experiments per design")
    rep.add_argument("--noise", type=float, default=0.01, help="approach2-bias: sd of the noise added to the loss")
    rep.add_argument("--family", help="hitchhiker: families to run (comma-separated); default per variant")
    rep.add_argument(
        "--variant",
        help="hitchhiker: comma-separated of main, no-cut, one-model, scale-down, predict-best (default all)",
    )
    rep.add_argument(
        "--plot",
        help="hitchhiker: one ARE heatmap per family and variant; approach2-bias: the bias figure; into this folder",
    )
    rep.add_argument("--out", help="hitchhiker: write the cells to OUT/results.parquet (`lawfit plot OUT` redraws)")
    rep.add_argument("--solver", choices=sorted(solvers.SOLVERS), default="lm", help=SOLVER_HELP)
    rep.add_argument(
        "--init",
        choices=["grid", "varpro"],
        default="grid",
        help="chinchilla: start from Epoch's 4500-point grid, or from the variable-projection scan's best points",
    )
    rep.add_argument("--varpro-starts", type=int, default=8, help="with --init varpro: how many starts")
    rep.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    rep.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        help="resamples for percentile intervals (compute-optimal: 0 means 200; porian: 0 means 100)",
    )
    rep.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    rep.set_defaults(run=_reproduce)

    fit = sub.add_parser("fit", help="fit laws to every group of your own runs (CSV/Parquet/Arrow)")
    fit.add_argument("file", help="a CSV, TSV, Parquet or Arrow file, one row per measured point")
    fit.add_argument("--law", help="law name(s), comma-separated (lawfit.laws.names())")
    fit.add_argument("--formula", help="your own law as an expression, e.g. 'E + A*N^-alpha + B*D^-beta'")
    fit.add_argument("--inputs", help="--formula: its names that are data columns (default: those in the file)")
    fit.add_argument("--bounds", help="--formula: parameter boxes, e.g. 'E=0:10,A=0:1e4,alpha=0:2' (empty = open)")
    fit.add_argument("--starts", help="--formula: start values, e.g. 'alpha=0.2|0.4' (default: draws in the bounds)")
    fit.add_argument("--name", default="formula", help="--formula: the law's name in the results")
    fit.add_argument("--law-file", help="a TOML file of [[law]] tables (formula, inputs, bounds, starts)")
    fit.add_argument("--map", help="schema=column pairs, e.g. params=N,tokens=D,value=loss")
    fit.add_argument("--group-by", default="family,metric", help="columns that split the rows into fits")
    fit.add_argument("--objective", default="huber-log", help="squared|huber - log|raw [- sum|mean]")
    fit.add_argument("--delta", type=float, default=1e-3, help="Huber delta")
    fit.add_argument(
        "--restarts", default="varpro", help="varpro, grid, screen (best 8 grid starts), or a number of random starts"
    )
    fit.add_argument("--solver", choices=sorted(solvers.SOLVERS), default="lm", help=SOLVER_HELP)
    fit.add_argument("--bootstrap", type=int, default=0, help="resamples for percentile 95%% intervals")
    fit.add_argument("--holdout", help="rows to hold out and predict, e.g. 'params>1e9'")
    fit.add_argument("--seed", type=int, default=0, help="seed of random starts and bootstrap resamples")
    fit.add_argument("--out", default="lawfit-out", help="folder for results, points and plots; a rerun resumes")
    fit.add_argument("--no-plot", action="store_true", help="write no plots")
    fit.add_argument("--quiet", action="store_true", help="no progress output")
    fit.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    _add_runner_flags(fit)
    fit.set_defaults(run=_fit)

    opt = sub.add_parser("optimal", help="compute-optimal N*(C), D*(C) by Chinchilla's approaches 1, 2 and 3")
    opt.add_argument("file", nargs="?", help="a CSV, TSV, Parquet or Arrow file, one row per run or checkpoint")
    opt.add_argument("--dataset", help="a bundled dataset instead of FILE (lawfit data list)")
    opt.add_argument("--map", help="schema=column pairs, e.g. params=N,tokens=D,value=loss,flops=C")
    opt.add_argument("--group-by", default="family,metric", help="columns that split the rows (those present)")
    opt.add_argument(
        "--approach", default="1,2,3", help="1: envelope of learning curves; 2: IsoFLOP profiles; 3: parametric law"
    )
    opt.add_argument("--bootstrap", type=int, default=0, help="resamples for percentile 95%% intervals (one job)")
    opt.add_argument("--budget", help="FLOP budgets to predict N*, D*, L* at, e.g. 1e24,1e25")
    opt.add_argument(
        "--budgets", default="auto", help="IsoFLOP budgets: auto (found in the FLOPs), chinchilla, or a list 1e19,3e19"
    )
    opt.add_argument("--tolerance", type=float, default=0.1, help="how far (relative) a run may lie off its budget")
    opt.add_argument("--min-points", type=int, default=3, help="fewest distinct sizes in a fitted profile")
    opt.add_argument(
        "--window",
        type=float,
        help="approach 2: fit each parabola only to sizes within this factor of the lowest-loss size (e.g. 4)",
    )
    opt.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    opt.add_argument("--out", default="lawfit-optimal", help="folder for the tables and plots")
    opt.add_argument("--no-plot", action="store_true", help="write no plots")
    opt.add_argument("--quiet", action="store_true", help="no progress output")
    opt.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    opt.set_defaults(run=_optimal)

    board = sub.add_parser("leaderboard", help="every law on every family under the hold-out protocol, ranked")
    board.add_argument("--dataset", default="hitchhiker", help="a bundled dataset (lawfit data list)")
    board.add_argument("--file", help="your own CSV/Parquet/Arrow table instead of --dataset")
    board.add_argument("--map", help="with --file: schema=column pairs, e.g. params=N,tokens=D,value=loss")
    board.add_argument("--laws", default="all", help="'all' applicable laws, or names (comma-separated)")
    board.add_argument("--families", help="families to rank (comma-separated); default every scaled family")
    board.add_argument("--metric", help="rows of this metric only")
    board.add_argument("--axis", choices=["params", "flops"], default="params", help="hold-out cut on size or compute")
    board.add_argument("--min-train", type=int, default=2, help="fewest model sizes trained on")
    board.add_argument("--max-windows", type=int, help="only the last N windows per family")
    board.add_argument("--objective", default="huber-log", help="squared|huber - log|raw [- sum|mean]")
    board.add_argument("--delta", type=float, default=1e-3, help="Huber delta")
    board.add_argument("--solver", choices=sorted(solvers.SOLVERS), default="lm", help=SOLVER_HELP)
    board.add_argument("--max-steps", type=int, default=2000, help="solver steps per restart")
    board.add_argument("--out", default="lawfit-leaderboard", help="folder for results, leaderboard.md/.png")
    board.add_argument("--no-plot", action="store_true", help="write no plot")
    board.add_argument("--quiet", action="store_true", help="no progress output")
    board.add_argument("--json", action="store_true", help="one JSON object on stdout instead of text")
    _add_runner_flags(board, chunk=512)
    board.set_defaults(run=_leaderboard)

    plot = sub.add_parser("plot", help="redraw the plots of saved results (fit, leaderboard or hitchhiker cells)")
    plot.add_argument("results", help="a results.parquet or the --out folder that holds it")
    plot.add_argument("--out", help="folder for the PNGs (default: next to the results)")
    plot.set_defaults(run=_plot)

    pred = sub.add_parser("predict", help="predict from saved fit results")
    pred.add_argument("results", help="results.parquet (or the --out folder of `lawfit fit`)")
    pred.add_argument("--params", type=float, help="model size N to predict at (parameters, > 0)")
    pred.add_argument("--tokens", type=float, help="training tokens D to predict at (> 0)")
    pred.add_argument("--flops", type=float, help="training compute C (FLOPs); default 6 N D")
    pred.add_argument("--at", help="any law inputs, e.g. 'N=7e10,D=1.4e12' (formula laws' own names)")
    pred.add_argument("--budget", type=float, help="FLOP budget: compute-optimal N and D where the law allows")
    pred.add_argument("--json", action="store_true", help="JSON rows on stdout instead of a table")
    pred.set_defaults(run=_predict)

    data = sub.add_parser("data", help="bundled datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_list = data_sub.add_parser("list", help="list the bundled datasets")
    data_list.add_argument("--json", action="store_true", help="JSON on stdout")
    data_list.set_defaults(run=_data_list)
    data_show = data_sub.add_parser("show", help="per-family summary of a bundled dataset")
    data_show.add_argument("name", help="a bundled dataset (lawfit data list)")
    data_show.add_argument("--family", help="this family only")
    data_show.add_argument("--json", action="store_true", help="JSON on stdout")
    data_show.set_defaults(run=_data_show)
    data_check = data_sub.add_parser("check", help="validate a CSV/Parquet/Arrow file and list every problem")
    data_check.add_argument("file", help="a CSV, TSV, Parquet or Arrow file")
    data_check.add_argument("--map", help="schema=column pairs, e.g. params=N,tokens=D,value=loss")
    data_check.add_argument("--json", action="store_true", help="JSON on stdout")
    data_check.set_defaults(run=_data_check)
    data_convert = data_sub.add_parser("convert", help="validate and write a file in the observation schema")
    data_convert.add_argument("file", help="a CSV, TSV, Parquet or Arrow file")
    data_convert.add_argument("--map", help="schema=column pairs, e.g. params=N,tokens=D,value=loss")
    data_convert.add_argument("--out", required=True, help="the Parquet file to write")
    data_convert.add_argument(
        "--on-invalid", choices=["raise", "drop"], default="raise", help="on bad rows: stop listing them, or drop them"
    )
    data_convert.set_defaults(run=_data_convert)
    return parser


INTERRUPTED = "lawfit: interrupted; rerun the same command to resume"


def _interrupted(signum, frame) -> None:
    # Ctrl-C ends the process at once: a KeyboardInterrupt raised inside a callback (jax's gc hook, a
    # worker thread's wait) can be swallowed. Finished chunks are already on disk, renamed into place
    # whole, so the same command resumes from them.
    sys.stderr.write(f"\n{INTERRUPTED}\n")
    sys.stderr.flush()
    os._exit(130)


# Commands that fit something: the `lawfit` command imports the fitting API before its job starts
# (`_collect_from_here`).
FITTING_COMMANDS = ("reproduce", "fit", "optimal", "leaderboard")


def _collect_from_here(args) -> None:
    """The `lawfit` command runs its imports with the interpreter's cyclic collector off (`entry`):
    jax, Polars and Equinox allocate ~10^6 objects, and the collections over them cost a fresh
    process ~0.1-0.2 s (`gc.callbacks`, Epoch grid). Once the command's modules are in, their objects
    are frozen (never scanned again) and collection resumes for the job. Fresh-process Epoch grid,
    medians of 8-10 interleaved runs on a slow day: 1.50 -> 1.42, 1.74 -> 1.59, 1.88 -> 1.71 s."""
    if args.command in FITTING_COMMANDS:
        from . import api  # noqa: F401 - imported here, before the freeze

    gc.freeze()
    gc.enable()


def main(argv: list[str] | None = None, collect_from_here: bool = False) -> int:
    """Run the command line `argv` (default: the process's); collect_from_here: turn the cyclic
    collector back on once the command's modules are imported (`entry` turned it off)."""
    args = build_parser().parse_args(argv)
    if collect_from_here:
        _collect_from_here(args)
    enable_compile_cache()
    previous = None
    if not args.debug and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _interrupted)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - one line for the user; --debug shows the traceback
        if args.debug:
            raise
        message = str(err).strip() or type(err).__name__
        print(f"lawfit: error: {message}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        from .cluster import disconnect

        disconnect()


def entry() -> None:
    """The `lawfit` command: `main` on the command line's arguments, then exit. The programs this
    command line loaded the last time start loading first, while the rest of lawfit imports
    (`batch.warm`)."""
    gc.disable()  # until the command's modules are imported (`_collect_from_here`)
    from .batch import warm

    warm.start(sys.argv[1:], warm.programs_directory())
    code = main(collect_from_here=True)
    # Nothing is left to collect: the interpreter's last collections over jax's heap took 0.1-0.2 s
    # of every command.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()

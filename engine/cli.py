"""The `lawfit` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path


def enable_compile_cache() -> None:
    """Persistent XLA compilation cache, so repeated jobs do not recompile."""
    import jax

    cache = os.environ.get("LAWFIT_CACHE_DIR", str(Path.home() / ".cache" / "lawfit" / "jax"))
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


def _reproduce(args) -> int:
    from . import reproduce

    if args.name != "chinchilla":
        raise SystemExit(f"lawfit reproduce: unknown target {args.name!r}; expected: chinchilla")
    out = reproduce.chinchilla(solver=args.solver, init=args.init, varpro_starts=args.varpro_starts)
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
    _print_table(rows)
    return 0


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
    from lawfit.data import find_issues, read_observations

    frame = read_observations(args.file, args.map)
    issues, _ = find_issues(frame)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lawfit", description="Fit scaling laws in bulk.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="reproduce a published fit on the bundled data")
    rep.add_argument("name", choices=["chinchilla"])
    rep.add_argument("--solver", choices=["lm", "lbfgs"], default="lm")
    rep.add_argument("--init", choices=["grid", "varpro"], default="grid")
    rep.add_argument("--varpro-starts", type=int, default=8)
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(run=_reproduce)

    data = sub.add_parser("data", help="bundled datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_list = data_sub.add_parser("list", help="list the bundled datasets")
    data_list.add_argument("--json", action="store_true")
    data_list.set_defaults(run=_data_list)
    data_show = data_sub.add_parser("show", help="per-family summary of a bundled dataset")
    data_show.add_argument("name")
    data_show.add_argument("--family")
    data_show.add_argument("--json", action="store_true")
    data_show.set_defaults(run=_data_show)
    data_check = data_sub.add_parser("check", help="validate a CSV/Parquet/Arrow file and list every problem")
    data_check.add_argument("file")
    data_check.add_argument("--map", help="schema=column pairs, e.g. params=N,tokens=D,value=loss")
    data_check.add_argument("--json", action="store_true")
    data_check.set_defaults(run=_data_check)
    data_convert = data_sub.add_parser("convert", help="validate and write a file in the observation schema")
    data_convert.add_argument("file")
    data_convert.add_argument("--map", help="schema=column pairs, e.g. params=N,tokens=D,value=loss")
    data_convert.add_argument("--out", required=True)
    data_convert.add_argument("--on-invalid", choices=["raise", "drop"], default="raise")
    data_convert.set_defaults(run=_data_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enable_compile_cache()
    try:
        return args.run(args)
    except Exception as err:  # noqa: BLE001 - one line for the user; --debug shows the traceback
        if args.debug:
            raise
        message = str(err).strip() or type(err).__name__
        print(f"lawfit: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

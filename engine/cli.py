"""The `lawfit` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
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


def _data(args) -> int:
    from . import datasets

    table = datasets.list()
    if args.json:
        print(json.dumps(table.to_dicts()))
    else:
        print(table.select("name", "rows", "families", "models", "licence"))
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
    data_list.set_defaults(run=_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enable_compile_cache()
    try:
        return args.run(args)
    except (ValueError, OSError) as err:
        if args.debug:
            raise
        print(f"lawfit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

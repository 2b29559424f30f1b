"""Plots (matplotlib, optional extra `plot`): fitted laws over the data with held-out points marked,
and relative residuals."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import polars as pl

from lawfit.kernels.base import training_flops


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # the plot extra is optional
        raise RuntimeError("plots need matplotlib: pip install 'lawfit[plot]'") from err
    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "all"


def _unique_name(title: str, used: set[str]) -> str:
    """A file-name stem for `title`; titles that differ only in punctuation get a short hash each."""
    stem = _slug(title)
    if stem in used:
        stem = f"{stem}-{hashlib.sha1(title.encode()).hexdigest()[:6]}"
    used.add(stem)
    return stem


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plain_log_ticks(axis) -> None:
    """Log-scale ticks labelled as plain numbers (2, 2.5, 3) when the range spans less than a decade."""
    from matplotlib import ticker

    low, high = axis.get_view_interval()
    if low > 0 and high / low < 10:
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
        axis.set_minor_formatter(ticker.NullFormatter())


SERIES_MAX = 12  # more distinct values than this of the second input: no curve per value
LINESTYLES = ("-", "--", ":", "-.")


def _axes_of(part: pl.DataFrame, inputs: list[str]) -> tuple[str, str | None]:
    """(x: the input with most distinct values, series: a second input with few distinct values)."""
    varying = [c for c in inputs if c in part.columns and part[c].n_unique() > 1]
    if not varying:
        return (inputs[0] if inputs else "value"), None
    x_name = max(varying, key=lambda c: part[c].n_unique())
    others = [c for c in varying if c != x_name and part[c].n_unique() <= SERIES_MAX]
    return x_name, (others[0] if others else None)


def _curve(law, theta, rows: pl.DataFrame, x_name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The law along x over the rows' range, other inputs held at the rows' (constant) values; None
    when another input varies along the rows (then the predictions are joined instead)."""
    x = rows[x_name].to_numpy().astype(float)
    grid = np.geomspace(x.min(), x.max(), 64) if x.min() > 0 else np.linspace(x.min(), x.max(), 64)
    columns = []
    for name in law.inputs:
        if name == x_name:
            columns.append(grid)
        elif name == "flops" and x_name in ("params", "tokens") and {"params", "tokens"} <= set(rows.columns):
            other = "tokens" if x_name == "params" else "params"
            if rows[other].n_unique() > 1:
                return None
            columns.append(training_flops(grid, float(rows[other][0])))
        elif rows[name].n_unique() == 1:
            columns.append(np.full(grid.shape, float(rows[name][0])))
        else:
            return None
    with np.errstate(all="ignore"):
        return grid, np.asarray(law.predict_raw(np.asarray(theta, dtype=float), np.stack(columns, axis=1)), float)


def fit_plots(
    points: pl.DataFrame,
    results: pl.DataFrame,
    group_by: tuple[str, ...],
    out_dir: str | Path,
    columns: dict[str, str] | None = None,
) -> list[Path]:
    """One PNG per group: the data against the input with most distinct values (log axes), one colour
    per value of a second input (e.g. one per model size), each law's fitted curve as lines (one line
    style per law), held-out points hollow and the hold-out cut marked; below, relative residuals
    (prediction / observed - 1). Axes carry the user's column names (`columns`: schema -> user)."""
    from lawfit import kernels

    plt = _pyplot()
    names = dict(columns or {})
    label = lambda name: names.get(name, name)  # noqa: E731
    out_dir = Path(out_dir)
    written, used = [], set()
    groups = points.partition_by(list(group_by), as_dict=True, maintain_order=True) if group_by else {(): points}
    for key, part in groups.items():
        key = key if isinstance(key, tuple) else (key,)
        laws = part["law"].unique(maintain_order=True).to_list()
        inputs = list(dict.fromkeys(n for law in laws for n in kernels.get(law).inputs))
        x_name, series = _axes_of(part, inputs)
        first = part.filter(pl.col("law") == laws[0])
        values = first["value"].cast(pl.Float64, strict=False)
        if not values.is_finite().all():
            first = first.filter(values.is_finite())
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True, height_ratios=(3, 1.4))
        levels = sorted(first[series].unique().to_list()) if series else [None]
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(levels), 1)))
        select = {level: (pl.col(series) == level) if series else pl.lit(True) for level in levels}
        for level, colour in zip(levels, colours, strict=True):
            rows = first.filter(select[level])
            held = rows["heldout"].to_numpy()
            x, y = rows[x_name].to_numpy(), rows["value"].to_numpy()
            text = f"{label(series)}={level:.3g}" if series else "data"
            top.scatter(x[~held], y[~held], s=16, color=colour, label=text if (~held).any() else None, zorder=3)
            if held.any():
                top.scatter(x[held], y[held], s=34, facecolors="none", edgecolors=colour, zorder=3,
                            label=None if (~held).any() else f"{text} (held out)")  # fmt: skip
        by_law = {row["law"]: row for row in _group_rows(results, group_by, key)}
        for index, law_name in enumerate(laws):
            law, style = kernels.get(law_name), LINESTYLES[index % len(LINESTYLES)]
            rows_law = part.filter(pl.col("law") == law_name)
            theta = by_law.get(law_name, {}).get("theta")
            for level, colour in zip(levels, colours, strict=True):
                rows = rows_law.filter(select[level]).sort(x_name)
                if rows.height == 0:
                    continue
                curve = _curve(law, theta, rows, x_name) if theta is not None else None
                if curve is None:
                    curve = rows[x_name].to_numpy(), rows["predicted"].to_numpy()
                top.plot(*curve, style, color=colour, lw=1.3)
                residual = rows["predicted"].to_numpy() / rows["value"].to_numpy() - 1.0
                bottom.plot(rows[x_name].to_numpy(), residual, "o" if index == 0 else "s^vD"[index % 4],
                            ms=3.5, color=colour, ls="none")  # fmt: skip
            status = by_law.get(law_name, {}).get("status", "?")
            top.plot([], [], style, color="grey", label=f"{law_name} fit ({status})")
        held_all = first["heldout"].to_numpy()
        if held_all.any() and (~held_all).any():
            x_all = first[x_name].to_numpy()
            if x_all[held_all].min() > x_all[~held_all].max():  # a cut along x: mark it
                cut = float(np.sqrt(x_all[held_all].min() * x_all[~held_all].max()))
                for ax in (top, bottom):
                    ax.axvline(cut, color="grey", ls=":", lw=1)
                top.plot([], [], ":", color="grey", label="hold-out cut")
            top.scatter([], [], s=34, facecolors="none", edgecolors="grey", label="held out (not fitted)")
        for ax in (top, bottom):
            ax.set_xscale("log")
        top.set_yscale("log")
        _plain_log_ticks(top.yaxis)
        top.set_ylabel(label("value"))
        bottom.axhline(0.0, color="grey", lw=0.8)
        bottom.set_ylabel("relative residual")
        bottom.set_xlabel(label(x_name))
        title = ", ".join(f"{k}={v}" for k, v in zip(group_by, key, strict=True)) or "all rows"
        top.set_title(title)
        top.legend(fontsize=7, ncol=2)
        written.append(_save(plt, fig, out_dir / f"fit_{_unique_name(title, used)}.png"))
    return written


def _group_rows(results: pl.DataFrame, group_by: tuple[str, ...], key: tuple) -> list[dict]:
    if not group_by:
        return results.to_dicts()
    match = pl.all_horizontal([pl.col(c) == v for c, v in zip(group_by, key, strict=True)])
    return results.filter(match).to_dicts()


def are_heatmaps(cells: list[dict], out_dir: str | Path, variant: str = "main") -> list[Path]:
    """One heatmap per family like the paper's: rows = number of train models k, columns = the fraction q
    of the longest train run, cells = ARE (%) on the target, annotated. A cell whose fit did not converge
    is hatched and its number starred; a cell with no fit is grey and marked x."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    table = pl.DataFrame(cells, infer_schema_length=None).filter(pl.col("variant") == variant)
    written, used = [], set()
    for family in table["family"].unique(maintain_order=True).to_list():
        part = table.filter(pl.col("family") == family)
        rows = sorted(part["k"].unique().to_list())
        cols = sorted(part["q"].unique().to_list())
        grid = np.full((len(rows), len(cols)), np.nan)
        status = np.full((len(rows), len(cols)), "", dtype=object)
        for cell in part.iter_rows(named=True):
            i, j = rows.index(cell["k"]), cols.index(cell["q"])
            status[i, j] = cell.get("status") or "?"
            if cell["are_percent"] is not None:
                grid[i, j] = cell["are_percent"]
        fig, ax = plt.subplots(figsize=(1.6 + 0.8 * len(cols), 1.4 + 0.55 * len(rows)))
        ax.set_facecolor("0.8")  # no fit
        image = ax.imshow(np.minimum(grid, 50.0), cmap="RdYlGn_r", vmin=0.0, vmax=50.0, origin="lower", aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                if not status[i, j]:
                    continue
                if not np.isfinite(grid[i, j]):
                    ax.text(j, i, "x", ha="center", va="center", fontsize=8, color="0.3")
                    continue
                converged = status[i, j] == "converged"
                if not converged:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0, ec="0.25"))
                ax.text(j, i, f"{grid[i, j]:.1f}" + ("" if converged else "*"), ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(cols)), [f"{q:g}" for q in cols])
        ax.set_yticks(range(len(rows)), [str(k) for k in rows])
        ax.set_xlabel("fraction of training (q)")
        ax.set_ylabel("models in the fit (k)")
        n_bad = int(((status != "") & (status != "converged")).sum())
        ax.set_title(
            f"{family} ({variant}): ARE % on the largest model\n"
            f"hatched*: not converged ({n_bad} of {int((status != '').sum())}); grey x: no fit",
            fontsize=9,
        )
        fig.colorbar(image, ax=ax, label="ARE % (clipped at 50)")
        written.append(_save(plt, fig, out_dir / f"hitchhiker_{variant}_{_unique_name(family, used)}.png"))
    return written


def leaderboard_plot(cells: pl.DataFrame, path: str | Path) -> Path:
    """Left: each law's mean rank over families (bars; lower is better). Right: family x law heatmap
    of the median hold-out ARE (%), log colour scale, blank where the law does not apply or failed."""
    from .leaderboard import rank

    plt = _pyplot()
    per_family, overall = rank(cells)
    laws = overall["law"].to_list()
    families = sorted(per_family["family"].unique().to_list())
    grid = np.full((len(families), len(laws)), np.nan)
    applies = np.zeros(grid.shape, bool)
    for row in per_family.iter_rows(named=True):
        at = families.index(row["family"]), laws.index(row["law"])
        applies[at] = True
        if row["median_are_percent"] is not None and np.isfinite(row["median_are_percent"]):
            grid[at] = row["median_are_percent"]
    failed = applies & ~np.isfinite(grid)
    height = max(4.0, 0.28 * len(families) + 1.5)
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(6 + 0.9 * len(laws), height), width_ratios=(1, 1.6))
    names = [law if ranked else f"{law} (unranked)" for law, ranked in zip(laws, overall["ranked"], strict=True)]
    colours = ["C0" if ranked else "0.7" for ranked in overall["ranked"]]
    bars.barh(names[::-1], overall["mean_rank"].to_numpy()[::-1], color=colours[::-1])
    bars.set_xlabel(f"mean rank over {len(families)} families (lower is better)")
    bars.set_title("leaderboard (grey: unranked, most fits reached no optimum)", fontsize=9)
    heat.set_facecolor("white")  # n/a: the law does not apply to the family
    shown = np.log10(np.clip(grid, 0.1, 100.0))
    image = heat.imshow(shown, cmap="RdYlGn_r", vmin=-1, vmax=2, aspect="auto")
    for i, j in zip(*np.nonzero(failed), strict=True):
        heat.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, color="0.15"))
        heat.text(j, i, "x", ha="center", va="center", fontsize=7, color="white")
    for i, j in zip(*np.nonzero(~applies), strict=True):
        heat.text(j, i, "n/a", ha="center", va="center", fontsize=6, color="0.5")
    heat.set_xticks(range(len(laws)), laws, rotation=45, ha="right")
    heat.set_yticks(range(len(families)), families, fontsize=7)
    heat.set_title("median hold-out ARE % per family\n(black x: most windows failed; n/a: law does not apply)",
                   fontsize=9)  # fmt: skip
    colorbar = fig.colorbar(image, ax=heat, ticks=[-1, 0, 1, 2])
    colorbar.ax.set_yticklabels(["0.1", "1", "10", "100"])
    colorbar.set_label("median hold-out ARE % (log scale)")
    return _save(plt, fig, Path(path))


def optimal_plots(
    report, out_dir: str | Path, group_by: tuple[str, ...] = (), at: tuple[float, ...] = ()
) -> list[Path]:
    """Per group of an `optimal.OptimalReport`: the IsoFLOP profiles (loss against N per budget, the
    fitted parabolas over their sampled range, each minimum with its bootstrap interval; hollow when
    the profile gave no interior minimum) and the frontiers N*(C) of every approach on one log-log
    figure (approach-2 minima and approach-1 envelope sizes as points, each power law as a line with
    its bootstrap band, extended to the requested budgets)."""
    from matplotlib import colors

    from .optimal import group_rows

    plt = _pyplot()
    out_dir = Path(out_dir)
    written, used, used_frontier = [], set(), set()
    points = report.points
    groups = points.partition_by(list(group_by), as_dict=True, maintain_order=True) if group_by else {(): points}
    for raw_key in groups:
        key = dict(zip(group_by, raw_key if isinstance(raw_key, tuple) else (raw_key,), strict=True))
        title = ", ".join(f"{k}={v}" for k, v in key.items()) or "all rows"
        profiles = group_rows(report.profiles, key)
        part = group_rows(points, key)
        if profiles.height:
            fig, ax = plt.subplots(figsize=(7.5, 5.5))
            norm = colors.LogNorm(profiles["budget"].min(), profiles["budget"].max() * 1.0001)
            cmap = plt.get_cmap("viridis")
            off = part.filter(pl.col("budget").is_null())
            if off.height:
                ax.scatter(off["params"], off["value"], s=8, color="0.75", label="on no budget", zorder=1)
            for row in profiles.iter_rows(named=True):
                colour = cmap(norm(row["budget"]) * 0.9)
                rows = part.filter(pl.col("budget") == row["budget"])
                # Sizes outside the fitted range (a --window) are drawn hollow.
                fitted = (rows["params"] >= row["n_fit_low"] * (1 - 1e-9)) & (
                    rows["params"] <= row["n_fit_high"] * (1 + 1e-9)
                )
                inside, outside = rows.filter(fitted), rows.filter(~fitted)
                ax.scatter(inside["params"], inside["value"], s=16, color=colour, zorder=3)
                ax.scatter(outside["params"], outside["value"], s=16, zorder=3, facecolors="none", edgecolors=colour)
                if row["c2"] is None or not np.isfinite(row["c2"]):
                    continue
                grid = np.linspace(
                    np.log(row["n_fit_low"] / row["n_ref"]), np.log(row["n_fit_high"] / row["n_ref"]), 64
                )
                ax.plot(
                    row["n_ref"] * np.exp(grid), row["c0"] + grid * (row["c1"] + grid * row["c2"]), color=colour, lw=1.2
                )
                if row["n_opt"] is None or not np.isfinite(row["n_opt"]):
                    continue
                good = row["status"] == "ok"
                ax.scatter([row["n_opt"]], [row["l_opt"]], marker="*", s=110, zorder=4, edgecolors="k", linewidths=0.6,
                           facecolors=colour if good else "none")  # fmt: skip
                if good and row["n_opt_low"] is not None and np.isfinite(row["n_opt_low"]):
                    ax.plot([row["n_opt_low"], row["n_opt_high"]], [row["l_opt"]] * 2, color="k", lw=0.8, zorder=4)
            ax.scatter([], [], marker="*", s=90, color="0.4", edgecolors="k", label="minimum (95 % interval)")
            ax.scatter([], [], marker="*", s=90, facecolors="none", edgecolors="k", label="no interior minimum")
            fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="FLOP budget C")
            ax.set_xscale("log")
            ax.set_xlabel("parameters N")
            ax.set_ylabel("loss")
            ax.set_title(f"{title}: IsoFLOP profiles (approach 2)")
            ax.legend(fontsize=7)
            written.append(_save(plt, fig, out_dir / f"isoflop_{_unique_name(title, used)}.png"))
        exponents = group_rows(report.exponents, key)
        if exponents.height and exponents["a"].is_not_null().any():
            fig, ax = plt.subplots(figsize=(7.5, 5.5))
            low = float(part["flops"].min())
            high = max([float(part["flops"].max()), *at])
            grid = np.geomspace(low, high, 64)
            envelope = group_rows(report.envelope, key)
            if envelope.height:
                ok = envelope.filter(pl.col("status") == "ok")
                ax.scatter(ok["budget"], ok["n_opt"], s=6, color="C0", alpha=0.5, label="approach 1: envelope size")
            if profiles.height:
                ok = profiles.filter(pl.col("status") == "ok")
                err = np.abs(
                    np.stack(
                        [
                            ok["n_opt"] - ok["n_opt_low"].fill_null(np.nan),
                            ok["n_opt_high"].fill_null(np.nan) - ok["n_opt"],
                        ]
                    )
                )
                ax.errorbar(ok["budget"], ok["n_opt"], yerr=np.nan_to_num(err), fmt="o", ms=4, color="C1", lw=0.8,
                            label="approach 2: profile minima")  # fmt: skip
            for row in exponents.iter_rows(named=True):
                if row["a"] is None:
                    continue
                colour = f"C{row['approach'] - 1}"
                line = row["k_n"] * grid ** row["a"]
                interval = f" [{row['a_low']:.3f}, {row['a_high']:.3f}]" if row.get("a_low") is not None else ""
                ax.plot(
                    grid, line, color=colour, lw=1.4, label=f"approach {row['approach']}: a = {row['a']:.3f}{interval}"
                )
                if row.get("a_low") is not None:
                    centre = np.sqrt(low * float(part["flops"].max()))
                    for a_edge in (row["a_low"], row["a_high"]):
                        ax.plot(grid, line * (grid / centre) ** (a_edge - row["a"]), color=colour, lw=0.6, ls=":")
            for c in at:
                ax.axvline(c, color="grey", ls=":", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("FLOP budget C")
            ax.set_ylabel("compute-optimal parameters N*")
            subtitle = "(dotted: the exponent's 95 % bootstrap interval)"
            ax.set_title(f"{title}: compute-optimal frontiers\n{subtitle}", fontsize=10)
            ax.legend(fontsize=7)
            written.append(_save(plt, fig, out_dir / f"frontier_{_unique_name(title, used_frontier)}.png"))
    return written

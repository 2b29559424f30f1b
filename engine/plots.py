"""Plots (matplotlib, optional extra `plot`): fitted laws over the data with held-out points marked,
and relative residuals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl


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


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fit_plots(points: pl.DataFrame, group_by: tuple[str, ...], out_dir: str | Path) -> list[Path]:
    """One PNG per group: data and each law's predictions against the input that varies most (log axes),
    held-out points hollow; below, relative residuals (prediction / observed - 1)."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    groups = points.partition_by(list(group_by), as_dict=True, maintain_order=True) if group_by else {(): points}
    for key, part in groups.items():
        key = key if isinstance(key, tuple) else (key,)
        axes_by = [c for c in ("tokens", "params", "flops") if c in part.columns and part[c].n_unique() > 1]
        x_name = max(axes_by, key=lambda c: part[c].n_unique()) if axes_by else "value"
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True, height_ratios=(3, 1.4))
        first = part.filter(pl.col("law") == part["law"][0])
        x, y, held = first[x_name].to_numpy(), first["value"].to_numpy(), first["heldout"].to_numpy()
        top.scatter(x[~held], y[~held], s=14, color="black", label="data (fit)")
        if held.any():
            top.scatter(x[held], y[held], s=30, facecolors="none", edgecolors="black", label="data (held out)")
        for index, (law, rows) in enumerate(part.partition_by("law", as_dict=True, maintain_order=True).items()):
            color = f"C{index}"
            order = np.argsort(rows[x_name].to_numpy(), kind="stable")
            px, pred = rows[x_name].to_numpy()[order], rows["predicted"].to_numpy()[order]
            top.plot(px, pred, ".", ms=4, color=color, label=f"{law[0]} prediction")
            bottom.plot(px, pred / rows["value"].to_numpy()[order] - 1.0, ".", ms=4, color=color)
        for ax in (top, bottom):
            ax.set_xscale("log")
        top.set_yscale("log")
        top.set_ylabel("value")
        bottom.axhline(0.0, color="grey", lw=0.8)
        bottom.set_ylabel("relative residual")
        bottom.set_xlabel(x_name)
        title = ", ".join(f"{k}={v}" for k, v in zip(group_by, key, strict=True)) or "all rows"
        top.set_title(title)
        top.legend(fontsize=8)
        written.append(_save(plt, fig, out_dir / f"fit_{_slug(title)}.png"))
    return written


def are_heatmaps(cells: list[dict], out_dir: str | Path, variant: str = "main") -> list[Path]:
    """One heatmap per family like the paper's: rows = number of train models k, columns = the fraction q
    of the longest train run, cells = ARE (%) on the target, annotated; blank where the fit failed."""
    plt = _pyplot()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pl.DataFrame(cells).filter(pl.col("variant") == variant)
    written = []
    for family in table["family"].unique(maintain_order=True).to_list():
        part = table.filter(pl.col("family") == family)
        rows = sorted(part["k"].unique().to_list())
        cols = sorted(part["q"].unique().to_list())
        grid = np.full((len(rows), len(cols)), np.nan)
        for cell in part.iter_rows(named=True):
            if cell["are_percent"] is not None:
                grid[rows.index(cell["k"]), cols.index(cell["q"])] = cell["are_percent"]
        fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(cols), 1.0 + 0.55 * len(rows)))
        image = ax.imshow(np.minimum(grid, 50.0), cmap="RdYlGn_r", vmin=0.0, vmax=50.0, origin="lower", aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(cols)), [f"{q:g}" for q in cols])
        ax.set_yticks(range(len(rows)), [str(k) for k in rows])
        ax.set_xlabel("fraction of training (q)")
        ax.set_ylabel("models in the fit (k)")
        ax.set_title(f"{family} ({variant}): ARE % on the largest model")
        fig.colorbar(image, ax=ax, label="ARE % (clipped at 50)")
        written.append(_save(plt, fig, out_dir / f"hitchhiker_{variant}_{_slug(family)}.png"))
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
    for row in per_family.iter_rows(named=True):
        if row["median_are_percent"] is not None and np.isfinite(row["median_are_percent"]):
            grid[families.index(row["family"]), laws.index(row["law"])] = row["median_are_percent"]
    height = max(4.0, 0.28 * len(families) + 1.5)
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(6 + 0.9 * len(laws), height), width_ratios=(1, 1.6))
    bars.barh(laws[::-1], overall["mean_rank"].to_numpy()[::-1], color="C0")
    bars.set_xlabel(f"mean rank over {len(families)} families (lower is better)")
    bars.set_title("leaderboard")
    shown = np.log10(np.clip(grid, 0.1, 100.0))
    image = heat.imshow(shown, cmap="RdYlGn_r", vmin=-1, vmax=2, aspect="auto")
    heat.set_xticks(range(len(laws)), laws, rotation=45, ha="right")
    heat.set_yticks(range(len(families)), families, fontsize=7)
    heat.set_title("median hold-out ARE % per family")
    colorbar = fig.colorbar(image, ax=heat, ticks=[-1, 0, 1, 2])
    colorbar.ax.set_yticklabels(["0.1", "1", "10", "100"])
    return _save(plt, fig, Path(path))

"""The approach-2 bias study as one batched job: synthetic loss surfaces with known exponents, IsoFLOP
sampling designs (grid width, centred / off-centre / drifting centres), with and without noise, every
simulated experiment fitted by approach 2 (a parabola per IsoFLOP profile, then a power law through
the minima) and by approach 3 (the parametric law), and the recovered allocation compared with the truth.

The designs follow the Open-Athena study "Problems with Chinchilla Approach 2" (Open-Athena/
scaling-law-analysis): surfaces L = E + A/N^alpha + B/D^beta, five budgets 1e17..1e21 FLOPs, 15 sizes per
profile spaced log-uniformly in D over [D_c / k, k D_c] around a centre D_c = m(C) D*(C), and the
error of D* extrapolated to 1e24 FLOPs. Its published errors are kept in `ARTICLE_D_ERROR` for comparison.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from lawfit import kernels
from lawfit.kernels.base import FLOPS_PER_PARAM_TOKEN, size_for_budget
from lawfit.kernels.chinchilla import compute_optimal as chinchilla_optimal

from .api import fit_many
from .fitjob import GOOD
from .optimal import APPROACH3_OBJECTIVE, SQUARED_RAW, power_law, vertex
from .types import Task


@dataclasses.dataclass(frozen=True)
class Surface:
    """L(N, D) = E + A / N^alpha + B / D^beta and its compute-optimal allocation under C = 6 N D."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def b(self) -> float:
        """The exponent of D* ∝ C^b."""
        return self.alpha / (self.alpha + self.beta)

    def d_opt(self, flops: np.ndarray) -> np.ndarray:
        return chinchilla_optimal(self.A, self.B, self.alpha, self.beta, flops)[1]


# Surfaces of the Open-Athena study: symmetric, Chinchilla's fit (Hoffmann et al. Table A3), and
# alpha/beta = 3 with alpha + beta as Chinchilla's.
SURFACES = {
    "symmetric": Surface(E=1.69, A=400.0, B=400.0, alpha=0.31, beta=0.31),
    "chinchilla": Surface(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "asymmetric": Surface(E=1.69, A=406.4, B=410.7, alpha=0.465, beta=0.155),
}
GRIDS = {"XS": 2.0, "S": 4.0, "L": 8.0, "XL": 16.0}  # +-k x around the centre
# Sampling centre as a multiple of D*: (at the lowest budget, at the highest), log-linear in log C between.
SAMPLINGS = {"centred": (1.0, 1.0), "offset 3x": (3.0, 3.0), "drift to 3x": (1.0, 3.0)}
BUDGETS = tuple(float(c) for c in np.geomspace(1e17, 1e21, 5))
POINTS_PER_PROFILE = 15
EVALUATION_BUDGET = 1e24

# Open-Athena's noise-free relative errors (%) of D* at 1e24 FLOPs (article figures 3 and 7).
ARTICLE_D_ERROR = {
    ("symmetric", "centred"): (0.0, 0.0, 0.0, 0.0),
    ("chinchilla", "centred"): (-0.33, -1.30, -2.90, -5.10),
    ("asymmetric", "centred"): (-1.67, -6.50, -13.91, -23.12),
    ("symmetric", "offset 3x"): (3.97, 3.47, 2.65, 1.51),
    ("chinchilla", "offset 3x"): (7.11, 5.69, 3.38, 0.24),
    ("asymmetric", "offset 3x"): (19.22, 14.41, 6.96, -2.42),
    ("symmetric", "drift to 3x"): (6.07, 5.17, 3.70, 1.69),
    ("chinchilla", "drift to 3x"): (11.61, 9.83, 6.94, 3.05),
    ("asymmetric", "drift to 3x"): (34.57, 30.04, 22.97, 14.00),
}


@dataclasses.dataclass(frozen=True)
class Design:
    """One simulated experimental design; `seeds` experiments of it are simulated (noise > 0)."""

    surface: str
    grid: str
    sampling: str
    noise: float

    def sample(self, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """params, tokens, loss: [budgets, points] of one experiment (noise drawn from `rng`)."""
        surface = SURFACES[self.surface]
        flops = np.array(BUDGETS)
        first, last = SAMPLINGS[self.sampling]
        t = (np.log(flops) - np.log(flops[0])) / (np.log(flops[-1]) - np.log(flops[0]))
        centre = surface.d_opt(flops) * np.exp(np.log(first) + t * (np.log(last) - np.log(first)))
        k = GRIDS[self.grid]
        tokens = centre[:, None] * np.geomspace(1.0 / k, k, POINTS_PER_PROFILE)[None, :]
        params = size_for_budget(flops[:, None], tokens)
        loss = surface.loss(params, tokens)
        if self.noise > 0:
            loss = loss + self.noise * rng.standard_normal(loss.shape)
        return params, tokens, loss


def designs(noise: Sequence[float] = (0.0, 0.01)) -> list[Design]:
    return [
        Design(surface, grid, sampling, float(sigma))
        for sigma in noise
        for surface in SURFACES
        for sampling in SAMPLINGS
        for grid in GRIDS
    ]


def run(
    noise: Sequence[float] = (0.0, 0.01),
    seeds: int = 100,
    approach3: bool = True,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Simulate every design (one experiment when noise-free, `seeds` when noisy), fit every IsoFLOP
    profile of every experiment and (approach3) the parametric law of every experiment in ONE
    `fit_many` job, and summarise per design: the recovered b against the truth and the relative
    error of D* at 1e24 FLOPs (mean and standard deviation over experiments), approach 2 and 3.

    Approach 2 drops a profile whose vertex lies outside its sampled sizes (`edge-minimum`); the
    `d_error_extrapolated_vertices_*` column keeps those vertices, as the Open-Athena study does.
    Approach 3 starts from the best 8 of the law's grid by objective (init="screen")."""
    rng = np.random.default_rng(seed)
    experiments = []  # (design, params, tokens, loss)
    for design in designs(noise):
        for _ in range(seeds if design.noise > 0 else 1):
            experiments.append((design, *design.sample(rng)))
    n_budgets = len(BUDGETS)
    profile_tasks, law_tasks = [], []
    centres = np.zeros((len(experiments), n_budgets))
    spans = np.zeros((len(experiments), n_budgets, 2))
    for e, (_, params, tokens, loss) in enumerate(experiments):
        for j in range(n_budgets):
            log_n = np.log(params[j])
            centres[e, j] = log_n.mean()
            x = log_n - centres[e, j]
            spans[e, j] = x.min(), x.max()
            profile_tasks.append(
                Task(kernels.isoflop_parabola, x[:, None], loss[j], objective=SQUARED_RAW, init=np.zeros((1, 3)))
            )
        if approach3:
            inputs = np.stack([params.ravel(), tokens.ravel()], axis=1)
            law_tasks.append(
                Task(kernels.get("chinchilla"), inputs, loss.ravel(), objective=APPROACH3_OBJECTIVE, init="varpro")
            )
    start = time.perf_counter()
    rows = fit_many(profile_tasks + law_tasks, progress=progress)
    seconds = time.perf_counter() - start

    n_profiles = len(profile_tasks)
    theta = np.array(rows["params"].slice(0, n_profiles).to_list(), dtype=np.float64).reshape(-1, n_budgets, 3)
    fit_ok = np.array([s in GOOD for s in rows["status"].slice(0, n_profiles).to_list()]).reshape(-1, n_budgets)
    x_star, _, status = vertex(theta[..., 0], theta[..., 1], theta[..., 2], spans[..., 0], spans[..., 1])
    ok = fit_ok & (status == "ok")
    log_c = np.broadcast_to(np.log(np.array(BUDGETS)), ok.shape)
    log_d_star = log_c - np.log(FLOPS_PER_PARAM_TOKEN) - (centres + x_star)
    b2, intercept2, _ = power_law(log_c, log_d_star, ok)
    d2_eval = np.exp(intercept2 + b2 * np.log(EVALUATION_BUDGET))
    # As the Open-Athena study does: every vertex kept, also those outside the sampled range.
    bx, interceptx, _ = power_law(log_c, log_d_star, fit_ok & (status != "no-minimum"))
    dx_eval = np.exp(interceptx + bx * np.log(EVALUATION_BUDGET))

    b3 = np.full(len(experiments), np.nan)
    d3_eval = np.full(len(experiments), np.nan)
    if approach3:
        law = kernels.get("chinchilla")
        law_rows = rows.slice(n_profiles, len(law_tasks))
        for e, (params, status3) in enumerate(zip(law_rows["params"].to_list(), law_rows["status"].to_list(),
                                                  strict=True)):  # fmt: skip
            if status3 not in GOOD or params is None:
                continue
            p = law.natural(params)
            fitted = Surface(E=p["E"], A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])
            b3[e] = fitted.b
            d3_eval[e] = fitted.d_opt(EVALUATION_BUDGET)

    table = []
    owner = np.array([exp[0] for exp in experiments], dtype=object)
    for design in designs(noise):
        pick = owner == design
        truth = SURFACES[design.surface]
        true_d = float(truth.d_opt(EVALUATION_BUDGET))
        err2 = 100.0 * (d2_eval[pick] / true_d - 1.0)
        err3 = 100.0 * (d3_eval[pick] / true_d - 1.0)
        errx = 100.0 * (dx_eval[pick] / true_d - 1.0)
        article = ARTICLE_D_ERROR[(design.surface, design.sampling)][list(GRIDS).index(design.grid)]
        table.append(
            dataclasses.asdict(design)
            | {
                "experiments": int(pick.sum()),
                "b_true": truth.b,
                "b_approach2_mean": _mean(b2[pick]),
                "b_approach2_sd": _sd(b2[pick]),
                "d_error_approach2_mean_percent": _mean(err2),
                "d_error_approach2_sd_percent": _sd(err2),
                "d_error_extrapolated_vertices_mean_percent": _mean(errx),
                "b_approach3_mean": _mean(b3[pick]) if approach3 else None,
                "b_approach3_sd": _sd(b3[pick]) if approach3 else None,
                "d_error_approach3_mean_percent": _mean(err3) if approach3 else None,
                "d_error_approach3_sd_percent": _sd(err3) if approach3 else None,
                "article_d_error_percent": article if design.noise == 0 else None,
                "profiles_without_minimum": int((~ok[pick]).sum()),
                "failed_experiments_approach2": int((~np.isfinite(b2[pick])).sum()),
            }
        )
    return {
        "table": pl.DataFrame(table),
        "experiments": len(experiments),
        "profile_fits": n_profiles,
        "law_fits": len(law_tasks),
        "seconds": seconds,
        "fits_per_second": (n_profiles + len(law_tasks)) / seconds,
    }


def _mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _sd(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.size > 1 else None


def _cells(table: pl.DataFrame, surface: str, sampling: str, noise: float) -> pl.DataFrame:
    """The rows of one (surface, sampling, noise) in grid order."""
    part = table.filter((pl.col("surface") == surface) & (pl.col("sampling") == sampling) & (pl.col("noise") == noise))
    return part.sort(pl.col("grid").replace_strict(list(GRIDS), list(range(len(GRIDS)))))


def plot(table: pl.DataFrame, path) -> Any:
    """Per surface: the error of D* at 1e24 FLOPs by grid width, one bar per sampling design (approach 2
    noise-free, every vertex kept as the Open-Athena study does; hollow circles: lawfit's default, which
    drops vertices outside the sampled sizes), Open-Athena's published errors as black ticks, the noisy
    experiments' mean +- sd as error bars and approach 3 (noisy, mean +- sd) as grey diamonds."""
    from pathlib import Path

    from .plots import _pyplot, _save

    plt = _pyplot()
    column = lambda part, name, fill=np.nan: part[name].fill_null(fill).to_numpy()  # noqa: E731
    fig, axes = plt.subplots(1, len(SURFACES), figsize=(5.0 * len(SURFACES), 4.4))
    width = 0.8 / len(SAMPLINGS)
    noisy_levels = sorted(v for v in table["noise"].unique().to_list() if v > 0)
    for ax, surface in zip(axes, SURFACES, strict=True):
        for i, sampling in enumerate(SAMPLINGS):
            x = np.arange(len(GRIDS)) + (i - (len(SAMPLINGS) - 1) / 2) * width
            first = i == 0
            exact = _cells(table, surface, sampling, 0.0)
            if exact.height:
                kept = column(exact, "d_error_extrapolated_vertices_mean_percent")
                ax.bar(x, kept, width, color=f"C{i}", label=f"approach 2, {sampling}")
                dropped = column(exact, "d_error_approach2_mean_percent")
                label = "edge minima dropped (lawfit's default)" if first else None
                ax.scatter(x, dropped, marker="o", s=22, facecolors="none", edgecolors="k", zorder=4, label=label)
                label = "Open-Athena (published)" if first else None
                ax.scatter(x, column(exact, "article_d_error_percent"), marker="_", s=160, color="k", zorder=4,
                           label=label)  # fmt: skip
            for sigma in noisy_levels:
                noisy = _cells(table, surface, sampling, sigma)
                mean2, sd2 = (
                    column(noisy, "d_error_approach2_mean_percent"),
                    column(noisy, "d_error_approach2_sd_percent", 0.0),
                )
                ax.errorbar(x, mean2, yerr=sd2, fmt="none", ecolor="0.2", lw=0.8, capsize=2)
                if noisy["d_error_approach3_mean_percent"].is_not_null().any():
                    mean3 = column(noisy, "d_error_approach3_mean_percent")
                    sd3 = column(noisy, "d_error_approach3_sd_percent", 0.0)
                    label = f"approach 3, noise {sigma:g}" if first else None
                    ax.errorbar(x, mean3, yerr=sd3, fmt="D", ms=3, color="0.5", lw=0.6, label=label)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(GRIDS)), [f"{g} (±{k:g}x)" for g, k in GRIDS.items()])
        truth = SURFACES[surface]
        ax.set_title(f"{surface}: alpha={truth.alpha:g}, beta={truth.beta:g}", fontsize=10)
        ax.set_ylabel("error of D* at 1e24 FLOPs (%)")
    axes[0].legend(fontsize=7)
    suffix = f"; error bars: noise sd {', '.join(f'{s:g}' for s in noisy_levels)}" if noisy_levels else ""
    fig.suptitle(f"Approach 2 bias by design (bars: noise-free{suffix})", fontsize=11)
    return _save(plt, fig, Path(path))

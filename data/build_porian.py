"""Rebuild `porian_isoflop.parquet` from the released analysis files of Porian et al. 2024.

    python -m lawfit.data.build_porian PATH/TO/resolving-scaling-law-discrepancies/data

Reads `summary_df*.pickle.xz` of formll/resolving-scaling-law-discrepancies (MIT), which hold, per
experimental setting, the IsoFLOP points the paper fits (model size, tokens and loss at each FLOP
budget) and the authors' own power-law fits. Unpickling needs pandas, which lawfit does not depend on:
only maintainers run this. Writes the observation table and `porian_published.json` (the authors'
exponent a with its bootstrap interval per setting) next to this module.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl

from .bundled import HERE
from .schema import conform

FILES = ("summary_df", "summary_df_owt2", "summary_df_att", "summary_df_kaplan_tuned_hparams")
# The paper's steps from Kaplan's setting to Chinchilla's (Porian et al. 2024, Figure 1), keyed by
# (hparams, warmup, decay): each step keeps the previous ones' changes.
STEPS = {
    ("base", "long", "kaplan"): "kaplan",
    ("base", "short", "kaplan"): "short-warmup",
    ("base", "short", "chinchilla"): "cosine-decay",
    ("tuned", "short", "const"): "tuned",
    ("tuned", "long", "const"): "tuned-long-warmup",
}


def family_name(dataset: str, hparams: str, warmup: str, decay: str, param_count: str) -> str:
    """e.g. porian-rw-tuned; the Kaplan setting with the head counted is porian-rw-kaplan-head."""
    step = STEPS[(hparams, warmup, decay)]
    if step == "kaplan" and param_count == "standard":
        step = "kaplan-head"
    elif param_count == "attention":
        step = f"{step}-attention"
    elif step == "tuned-long-warmup":
        step = "kaplan-tuned"
    return f"porian-{dataset}-{step}"


def build(folder: Path) -> tuple[pl.DataFrame, dict[str, dict[str, float]]]:
    import pandas as pd  # noqa: PLC0415 - maintainers only; lawfit does not depend on pandas

    rows: list[dict] = []
    published: dict[str, dict[str, float]] = {}
    for file in FILES:
        summary = pd.read_pickle(folder / f"{file}.pickle.xz")
        for _, setting in summary.iterrows():
            family = family_name(
                setting["dataset"], setting["hparams"], setting["warmup"], setting["decay"], setting["param_count"]
            )
            if family in published:
                raise ValueError(f"two settings map to {family}")
            for _, budget in setting["optimal_pairs"].iterrows():
                for n, t, loss in zip(budget["n_vals"], budget["t_vals"], budget["loss_vals"], strict=True):
                    rows.append(
                        {
                            "family": family,
                            "run_id": f"{family}/N={n:.0f}/C={budget['flops']:.3g}",
                            "params": float(n),
                            "tokens": float(t),
                            "flops": float(budget["flops"]),
                            "metric": "loss",
                            "value": float(loss),
                            "dataset": setting["dataset"],
                            "hparams": setting["hparams"],
                            "warmup": setting["warmup"],
                            "decay": setting["decay"],
                            "param_count": setting["param_count"],
                            "loss_split": setting["val"],
                        }
                    )
            # The paper's figures quote the median of the weighted bootstrap fits.
            fits = setting["fit_results"]
            samples = np.array([fit["n_exponent"] for fit in fits["bootstrap_weighted"] if "n_exponent" in fit])
            published[family] = {
                "a": float(fits["bs_median_weighted"]["n_exponent"]),
                "a_low": float(np.percentile(samples, 2.5)),
                "a_high": float(np.percentile(samples, 97.5)),
                "budgets": int(len(setting["optimal_pairs"])),
            }
    return conform(pl.DataFrame(rows)), published


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path, help="data/ of a resolving-scaling-law-discrepancies checkout")
    args = parser.parse_args(argv)
    frame, published = build(args.folder)
    frame.write_parquet(HERE / "porian_isoflop.parquet", compression="zstd", statistics=True)
    (HERE / "porian_published.json").write_text(json.dumps(published, indent=1, sort_keys=True) + "\n")
    print(f"porian_isoflop.parquet: {frame.height} rows, {len(published)} settings")


if __name__ == "__main__":
    main()

"""`lawfit.datasets`: the bundled released datasets, in the observation schema."""

from __future__ import annotations

import polars as pl

from lawfit.data import bundled


def load(name: str) -> pl.DataFrame:
    """A bundled dataset by name (see `list()`)."""
    return bundled.load(name)


def scalebench(task: str, split: str = "train") -> pl.DataFrame:
    """A bundled ScaleBench task (e.g. "moe_scaling_law"), "train" or "test" split, in its own columns."""
    return bundled.scalebench(task, split)


def list() -> pl.DataFrame:  # noqa: A001 - the public name the API promises
    """One row per bundled dataset: name, rows, families, models (distinct runs), licence, description and
    `family_models` ([{family, models}, ...])."""
    rows = []
    for name, info in sorted(bundled.BUNDLED.items()):
        frame = bundled.load(name)
        rows.append(
            {
                "name": name,
                "rows": frame.height,
                "families": frame["family"].n_unique(),
                "models": frame["run_id"].n_unique(),
                "licence": info.licence,
                "description": info.description,
                "family_models": frame.group_by("family")
                .agg(pl.col("run_id").n_unique().alias("models"))
                .sort("family")
                .to_dicts(),
            }
        )
    return pl.DataFrame(rows)

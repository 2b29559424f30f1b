"""The long-format observation schema: one row per measured point."""

from __future__ import annotations

import polars as pl

# Required columns and their dtypes; covariates a law may ask for are optional extra Float64 columns.
OBSERVATION_SCHEMA: dict[str, pl.DataType] = {
    "family": pl.String(),
    "run_id": pl.String(),
    "params": pl.Float64(),
    "tokens": pl.Float64(),
    "flops": pl.Float64(),
    "step": pl.Int64(),
    "metric": pl.String(),
    "value": pl.Float64(),
    "seed": pl.Int64(),
}
NULLABLE = {"flops", "step", "seed"}
OPTIONAL_COVARIATES = ("unique_tokens", "lr", "lr_area", "lr_annealing_area", "epochs", "loss")


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to the schema (adding nullable columns that are absent), required columns first."""
    missing = [c for c in OBSERVATION_SCHEMA if c not in frame.columns and c not in NULLABLE]
    if missing:
        raise ValueError(f"missing required column(s) {missing}; the schema needs {list(OBSERVATION_SCHEMA)}")
    frame = frame.with_columns(
        [
            pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in OBSERVATION_SCHEMA.items()
            if name not in frame.columns
        ]
    )
    frame = frame.with_columns([pl.col(name).cast(dtype) for name, dtype in OBSERVATION_SCHEMA.items()])
    extra = [c for c in frame.columns if c not in OBSERVATION_SCHEMA]
    return frame.select(list(OBSERVATION_SCHEMA) + extra)

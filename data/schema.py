"""The long-format observation schema: one row per measured point."""

from __future__ import annotations

import polars as pl

from lawfit.kernels.base import training_flops

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


def with_flops(frame: pl.DataFrame, column: str = "flops") -> pl.DataFrame:
    """`column` where it is absent or null: 6 N D from `params` and `tokens` (a frame without both is
    returned unchanged)."""
    if not {"params", "tokens"} <= set(frame.columns):
        return frame
    six_nd = training_flops(pl.col("params").cast(pl.Float64), pl.col("tokens").cast(pl.Float64))
    if column not in frame.columns:
        return frame.with_columns(six_nd.alias(column))
    return frame.with_columns(pl.col(column).fill_null(six_nd))


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

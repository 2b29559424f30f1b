"""Rebuild the bundled Parquet files from the raw releases (a checkout of the project's shared/data, and the
`evals/` folder of EleutherAI/pythia at commit a19eecb807ec2c79a39ebf18108816e6ffffc1d5 for the Hitchhiker
collection's Pythia families).

    python -m lawfit.data.build_bundled --shared ../shared/data --pythia-evals PATH/TO/pythia/evals

Only run by maintainers; the package itself never reads the raw releases.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from lawfit.kernels.base import size_for_budget

from . import build_hitchhiker
from .bundled import HERE
from .schema import conform


def epoch_chinchilla(shared: Path) -> pl.DataFrame:
    raw = pl.read_csv(shared / "epoch_chinchilla" / "svg_extracted_data.csv")
    frame = raw.with_row_index("row").select(
        pl.lit("chinchilla").alias("family"),
        pl.format("chinchilla-{}", pl.col("row")).alias("run_id"),
        pl.col("Model Size").alias("params"),
        size_for_budget(pl.col("Training FLOP"), pl.col("Model Size")).alias("tokens"),
        pl.col("Training FLOP").alias("flops"),
        pl.lit("loss").alias("metric"),
        pl.col("loss").alias("value"),
    )
    return conform(frame)


def overtraining(shared: Path) -> pl.DataFrame:
    """Gadre et al. 2024: one row per (run, eval set) loss plus the two downstream-error averages."""
    raw = pl.read_csv(shared / "gadre2024_overtraining" / "models_flat.csv", infer_schema_length=None)
    metrics = [c for c in raw.columns if (c.startswith("loss_") and not c.endswith("95")) or c.startswith("err_avg")]
    long = raw.unpivot(
        index=["name", "dataset", "model", "N_params", "D_tokens", "flops_6ND", "token_multiplier_M", "seed"],
        on=metrics,
        variable_name="metric",
        value_name="value",
    )
    frame = long.select(
        pl.format("overtrain-{}", pl.col("dataset")).alias("family"),
        pl.col("name").alias("run_id"),
        pl.col("N_params").cast(pl.Float64).alias("params"),
        pl.col("D_tokens").cast(pl.Float64).alias("tokens"),
        pl.col("flops_6ND").cast(pl.Float64).alias("flops"),
        pl.col("metric").str.replace("^loss_", ""),
        pl.col("value").cast(pl.Float64),
        pl.col("seed").cast(pl.Int64, strict=False),
        pl.col("token_multiplier_M").cast(pl.Float64).alias("token_multiplier"),
        pl.col("model"),
    ).filter(pl.col("value").is_not_null())
    return conform(frame)


def datablations(shared: Path) -> pl.DataFrame:
    """Muennighoff et al. 2023: every finished run, with the 182-run fit subset flagged."""
    folder = shared / "muennighoff2023_datablations"
    runs = pl.read_csv(folder / "runs_all_296.csv")
    # Seed replicates share a name: match the fit set on the loss too (printed to 6 decimals).
    key = ["name", "N_params", "D_tokens_total", "U_unique_tokens", "loss_key"]
    fit = pl.read_csv(folder / "runs_fit_182.csv").with_columns(pl.col("val_loss").round(5).alias("loss_key"))
    fit = fit.select(key).unique().with_columns(pl.lit(True).alias("fit_subset"))
    runs = runs.with_row_index("row").with_columns(pl.col("val_loss").round(5).alias("loss_key"))
    runs = runs.join(fit, on=key, how="left")
    frame = runs.select(
        pl.lit("datablations").alias("family"),
        pl.format("{}-{}", pl.col("name"), pl.col("row")).alias("run_id"),
        pl.col("N_params").cast(pl.Float64).alias("params"),
        pl.col("D_tokens_total").cast(pl.Float64).alias("tokens"),
        pl.lit("val_loss").alias("metric"),
        pl.col("val_loss").cast(pl.Float64).alias("value"),
        pl.col("U_unique_tokens").cast(pl.Float64).alias("unique_tokens"),
        pl.col("epochs_D_over_U").cast(pl.Float64).alias("epochs"),
        pl.col("fit_subset").fill_null(False),
    )
    return conform(frame)


def revisiting(shared: Path) -> pl.DataFrame:
    """Alabdulmohsin et al. 2022 learning curves (duplicates removed), with the train/test split."""
    folder = shared / "alabdulmohsin2022_revisiting"
    raw = pl.concat([pl.read_csv(folder / f"benchmark.{part}.csv") for part in ("lang", "vision")]).unique(
        maintain_order=True
    )
    frame = raw.select(
        pl.format("{}/{}/{}", pl.col("Domain"), pl.col("Task"), pl.col("Model")).alias("family"),
        pl.format("{}/{}/{}", pl.col("Domain"), pl.col("Task"), pl.col("Model")).alias("run_id"),
        pl.lit(None, dtype=pl.Float64).alias("params"),
        pl.col("Seen Examples").cast(pl.Float64).alias("tokens"),
        pl.col("Task").alias("metric"),
        pl.col("Loss").cast(pl.Float64).alias("value"),
        (pl.col("Training") == 1).alias("train"),
    )
    return conform(frame)


BUILDERS = {
    "epoch_chinchilla.parquet": epoch_chinchilla,
    "overtraining.parquet": overtraining,
    "datablations.parquet": datablations,
    "revisiting.parquet": revisiting,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, required=True, help="path to shared/data")
    parser.add_argument("--pythia-evals", type=Path, help="evals/ of an EleutherAI/pythia checkout (for hitchhiker)")
    parser.add_argument("--only", nargs="*", help="rebuild only these files")
    args = parser.parse_args(argv)
    builders = dict(BUILDERS)
    if args.pythia_evals is not None:
        builders["hitchhiker.parquet"] = lambda shared: build_hitchhiker.build(shared / "hitchhiker", args.pythia_evals)
    for file, build in builders.items():
        if args.only and file not in args.only:
            continue
        frame = build(args.shared)
        frame.write_parquet(HERE / file, compression="zstd", statistics=True)
        print(f"{file}: {frame.height} rows")


if __name__ == "__main__":
    main()

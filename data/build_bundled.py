"""Rebuild the bundled Parquet files from the raw releases (a checkout of the project's shared/data).

    python -m lawfit.data.build_bundled --shared ../shared/data

Only run by maintainers; the package itself never reads the raw releases.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

from .bundled import HERE
from .schema import conform


def epoch_chinchilla(shared: Path) -> pl.DataFrame:
    raw = pl.read_csv(shared / "epoch_chinchilla" / "svg_extracted_data.csv")
    frame = raw.with_row_index("row").select(
        pl.lit("chinchilla").alias("family"),
        pl.format("chinchilla-{}", pl.col("row")).alias("run_id"),
        pl.col("Model Size").alias("params"),
        (pl.col("Training FLOP") / (6.0 * pl.col("Model Size"))).alias("tokens"),
        pl.col("Training FLOP").alias("flops"),
        pl.lit("loss").alias("metric"),
        pl.col("loss").alias("value"),
    )
    return conform(frame)


BUILDERS = {"epoch_chinchilla.parquet": epoch_chinchilla}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, required=True, help="path to shared/data")
    args = parser.parse_args(argv)
    for file, build in BUILDERS.items():
        frame = build(args.shared)
        frame.write_parquet(HERE / file, compression="zstd", statistics=True)
        print(f"{file}: {frame.height} rows")


if __name__ == "__main__":
    main()

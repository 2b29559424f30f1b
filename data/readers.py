"""Read a user's CSV / Parquet / Arrow file into the observation schema, with a column mapping."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from .schema import OBSERVATION_SCHEMA, OPTIONAL_COVARIATES
from .validate import Issue


def known_names() -> list[str]:
    """Names a `--map` key may take: the schema's columns, the optional covariates and every input a
    registered law reads."""
    from lawfit import kernels  # late: kernels registers laws on import

    law_inputs = [name for law in kernels.names() for name in kernels.get(law).inputs]
    return list(dict.fromkeys([*OBSERVATION_SCHEMA, *OPTIONAL_COVARIATES, *law_inputs]))


def mapping_issues(frame: pl.DataFrame, mapping: Mapping[str, str]) -> list[Issue]:
    """Every problem with a column mapping on this table: unknown names, mapped columns the file does
    not have, and a schema column of the file renamed away with nothing mapped in its place (its rows
    would silently fall back to the default, e.g. every family pooled into 'default')."""
    issues = []
    known = known_names()
    for name, source in mapping.items():
        if name not in known:
            problem = f"--map {name}={source}: unknown name {name!r}; known: {', '.join(known)}"
            issues.append(Issue(name, problem, 0, ()))
        if source not in frame.columns:
            issues.append(Issue(source, f"--map {name}={source}: no such column; the file has {frame.columns}", 0, ()))
        elif source in OBSERVATION_SCHEMA and source != name and source not in mapping:
            issues.append(
                Issue(
                    source,
                    f"--map {name}={source}: renames the file's {source!r} column to {name!r}, leaving no "
                    f"{source!r} column; map it explicitly ({source}=COLUMN) or keep it",
                    0,
                    (),
                )
            )
    return issues


def parse_mapping(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """`"params=N,tokens=D,value=loss"` -> {"params": "N", "tokens": "D", "value": "loss"}."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        return dict(spec)
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            raise ValueError(f"--map: expected name=column pairs like 'params=N', got {part!r}")
        name, column = (x.strip() for x in part.split("=", 1))
        if not name or not column:
            raise ValueError(f"--map: expected name=column pairs like 'params=N', got {part!r}")
        mapping[name] = column
    return mapping


def read_table(path: str | Path) -> pl.DataFrame:
    """A CSV, Parquet or Arrow IPC file as a DataFrame; errors say what could not be read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
        if suffix in (".arrow", ".ipc", ".feather"):
            return pl.read_ipc(path)
        if suffix in (".csv", ".tsv", ".txt"):
            return pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=None)
    except Exception as err:  # noqa: BLE001 - polars/pyarrow raise many kinds; report them alike
        raise ValueError(f"cannot read {path} as {suffix.lstrip('.')}: {str(err).splitlines()[0]}") from err
    raise ValueError(f"unsupported file type {suffix!r} for {path}: expected .csv, .tsv, .parquet or .arrow")


def to_observations(frame: pl.DataFrame, mapping: Mapping[str, str] | None = None) -> pl.DataFrame:
    """Rename mapped columns to schema names and fill the optional ones (family 'default', run_id
    from params, metric 'loss'; flops stays null, meaning 6ND); other columns are kept as covariates."""
    mapping = dict(mapping or {})
    issues = mapping_issues(frame, mapping)
    if issues:
        raise ValueError("\n".join(issue.problem for issue in issues))
    frame = frame.rename({source: name for name, source in mapping.items() if source != name})
    fill = []
    if "family" not in frame.columns:
        fill.append(pl.lit("default").alias("family"))
    if "metric" not in frame.columns:
        fill.append(pl.lit("loss").alias("metric"))
    if "run_id" not in frame.columns and "params" in frame.columns:
        fill.append(pl.format("N={}", pl.col("params")).alias("run_id"))
    frame = frame.with_columns(fill) if fill else frame
    ordered = [c for c in OBSERVATION_SCHEMA if c in frame.columns]
    return frame.select(ordered + [c for c in frame.columns if c not in ordered])


def read_observations(path: str | Path, mapping: str | Mapping[str, str] | None = None) -> pl.DataFrame:
    return to_observations(read_table(path), parse_mapping(mapping))

"""Validation at the edge: every problem in an observation table, named by column and rows.

frame, report = validate(frame)                       # raises ValidationError listing all problems
frame, report = validate(frame, on_invalid="drop")    # drops offending rows, counts them in report
"""

from __future__ import annotations

import dataclasses

import polars as pl

from .schema import OBSERVATION_SCHEMA

NUMERIC = ("params", "tokens", "flops", "value")
POSITIVE = ("params", "tokens", "flops")
KEY = ("family", "run_id", "metric", "tokens", "step")
REQUIRED = ("params", "tokens", "value")
# Beyond these a value is a unit or parsing mistake, not a measurement (the largest published runs have
# ~1e12 params, ~1e14 tokens, ~1e26 FLOPs); such values would dominate or overflow a fit.
PLAUSIBLE_MAX = {"params": 1e20, "tokens": 1e20, "flops": 1e35, "value": 1e12}


@dataclasses.dataclass(frozen=True)
class Issue:
    """One problem: the column, what is wrong, how many rows and the first few of them (0-based)."""

    column: str
    problem: str
    n_rows: int
    rows: tuple[int, ...]

    def __str__(self) -> str:
        where = f" at rows {list(self.rows)}{' ...' if self.n_rows > len(self.rows) else ''}" if self.rows else ""
        count = f" ({self.n_rows} row{'s' if self.n_rows != 1 else ''})" if self.n_rows else ""
        return f"column {self.column!r}: {self.problem}{count}{where}"


class ValidationError(ValueError):
    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("invalid observations:\n" + "\n".join(f"  - {issue}" for issue in issues))


@dataclasses.dataclass(frozen=True)
class Report:
    rows_in: int
    rows_out: int
    issues: tuple[Issue, ...]

    @property
    def dropped(self) -> int:
        return self.rows_in - self.rows_out


def _rows(mask: pl.Series, limit: int = 5) -> tuple[int, tuple[int, ...]]:
    hits = mask.arg_true()
    return hits.len(), tuple(hits.head(limit).to_list())


def find_issues(
    frame: pl.DataFrame, required=REQUIRED, positive=POSITIVE, numeric=NUMERIC
) -> tuple[list[Issue], pl.Series]:
    """All problems and a boolean mask of the rows that have one. `numeric`: the columns checked as
    numbers (finite, within `PLAUSIBLE_MAX`); `positive`: those that must also be > 0."""
    issues: list[Issue] = []
    bad = pl.Series("bad", [False] * frame.height)
    for column in required:
        if column not in frame.columns:
            issues.append(Issue(column, "missing required column", 0, ()))
    for column in dict.fromkeys((*numeric, *positive)):
        if column not in frame.columns:
            continue
        raw = frame[column]
        values = raw.cast(pl.Float64, strict=False)
        not_numeric = values.is_null() & raw.is_not_null()
        if not_numeric.any():
            n, rows = _rows(not_numeric)
            issues.append(Issue(column, f"expected numbers, got values like {raw.filter(not_numeric)[0]!r}", n, rows))
            bad = bad | not_numeric
        missing = raw.is_null() if column in required else pl.Series([False] * frame.height)
        if missing.any():
            n, rows = _rows(missing)
            issues.append(Issue(column, "missing value (null)", n, rows))
            bad = bad | missing
        non_finite = (values.is_nan() | values.is_infinite()).fill_null(False)
        if non_finite.any():
            n, rows = _rows(non_finite)
            issues.append(Issue(column, "non-finite value (NaN or inf)", n, rows))
            bad = bad | non_finite
        finite = values.is_finite().fill_null(False)
        if column in positive:
            non_positive = (values <= 0).fill_null(False)
            if non_positive.any():
                n, rows = _rows(non_positive)
                example = values.filter(non_positive)[0]
                why = "laws take its log" if column != "value" else "a log-space objective takes its log"
                issues.append(Issue(column, f"must be > 0 ({why}), got {example!r}", n, rows))
                bad = bad | non_positive
        limit = PLAUSIBLE_MAX.get(column, PLAUSIBLE_MAX["value"])
        extreme = (finite & (values.abs() > limit)).fill_null(False)
        if extreme.any():
            n, rows = _rows(extreme)
            example = values.filter(extreme)[0]
            issues.append(
                Issue(column, f"implausibly large (|x| > {limit:.0e}), got {example!r}", n, rows)
            )
            bad = bad | extreme
    key = [c for c in KEY if c in frame.columns]
    if key and all(c in frame.columns for c in ("tokens",)):
        duplicated = frame.select(key).is_duplicated()
        if duplicated.any():
            n, rows = _rows(duplicated)
            issues.append(Issue(",".join(key), "duplicate key (same run, metric and point)", n, rows))
    return issues, bad


def validate(frame: pl.DataFrame, *, on_invalid: str = "raise", required=REQUIRED, positive=POSITIVE):
    """Check an observation table; returns (frame, report).

    on_invalid="raise": any problem raises ValidationError listing every problem.
    on_invalid="drop": rows with a bad value are dropped (duplicates and missing columns still raise).
    """
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    issues, bad = find_issues(frame, required, positive)
    structural = [i for i in issues if i.problem.startswith(("missing required", "duplicate"))]
    if issues and (on_invalid == "raise" or structural):
        raise ValidationError(issues if on_invalid == "raise" else structural)
    out = frame.filter(~bad) if on_invalid == "drop" else frame
    casts = [pl.col(c).cast(OBSERVATION_SCHEMA[c], strict=False) for c in NUMERIC if c in out.columns]
    out = out.with_columns(casts)
    return out, Report(frame.height, out.height, tuple(issues))

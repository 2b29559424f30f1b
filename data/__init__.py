"""lawfit.data: the observation schema, validation, readers, and the bundled released datasets."""

from .bundled import BUNDLED, load
from .readers import parse_mapping, read_observations, read_table, to_observations
from .schema import OBSERVATION_SCHEMA, conform
from .validate import Issue, Report, ValidationError, find_issues, validate

__all__ = [
    "BUNDLED",
    "OBSERVATION_SCHEMA",
    "Issue",
    "Report",
    "ValidationError",
    "conform",
    "find_issues",
    "load",
    "parse_mapping",
    "read_observations",
    "read_table",
    "to_observations",
    "validate",
]

"""lawfit.data: the observation schema and the bundled released datasets."""

from .bundled import BUNDLED, load
from .schema import OBSERVATION_SCHEMA, conform

__all__ = ["BUNDLED", "OBSERVATION_SCHEMA", "conform", "load"]

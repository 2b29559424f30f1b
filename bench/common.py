"""Shared helpers for the benchmark scripts: machine facts and result files."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    import jax

    versions = {name: metadata.version(name) for name in ("jax", "jaxlib", "optax", "numpy", "scipy", "polars")}
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "n_devices": jax.local_device_count(),
        "python": platform.python_version(),
        "versions": versions,
    }


def write(name: str, figures: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), "figures": figures}, indent=2))
    return path

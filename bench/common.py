"""Shared helpers for the benchmark scripts: machine facts and result files."""

from __future__ import annotations

import compileall
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    import jax

    names = ("jax", "jaxlib", "optax", "numpy", "scipy", "polars", "ml_dtypes")
    versions = {name: metadata.version(name) for name in names}
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


def own_cache() -> str:
    """Give this bench (and the processes it starts) a new, empty compile cache and program archive,
    and compile lawfit's bytecode. Its fresh processes then see what a user's second run sees: the
    programs its first run compiled, archived with their executables (an older cache can hold XLA
    entries without them, from earlier versions of the code), and the `.pyc` files any install
    or first import writes (`PYTHONDONTWRITEBYTECODE` is set on the development machine)."""
    import lawfit
    from lawfit import kernels

    for package in (lawfit, kernels):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)
    cache = tempfile.mkdtemp(prefix="lawfit-bench-cache-")
    os.environ["LAWFIT_CACHE_DIR"] = cache
    return cache

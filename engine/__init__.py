"""lawfit: fit scaling laws in bulk with jit- and vmap-compiled batched solvers.

The public API is flat: `fit`, `fit_many`, `tasks_from_frame`, `laws`, `datasets`, and the shared
types `Task`, `Objective`, `Race`, `Status`.
"""

import importlib
import os

import jax

# Process-wide, at import (see the README): float64 by default, since scaling-law objectives live at
# 1e-3 and below, where float32 stalls; and one CPU device per core, so that a pool's lanes are
# stepped on every core (`lawfit.batch.programs.lane_devices`). LAWFIT_CPU_DEVICES sets the count;
# XLA_FLAGS' --xla_force_host_platform_device_count, when given, wins.
jax.config.update("jax_enable_x64", True)


def _cpu_devices() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, int(os.environ.get("LAWFIT_CPU_DEVICES", min(cores, 8))))


if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    try:
        jax.config.update("jax_num_cpu_devices", _cpu_devices())
    except (AttributeError, RuntimeError):  # an older jax, or a backend already started
        pass

__version__ = "0.1.0"

# The public names are imported on first use (PEP 562): `import lawfit` costs `import jax` alone, so
# the command line can start loading its compiled programs (`batch.warm`) while the rest of lawfit
# (Polars, Equinox: ~0.3 s) imports.
_PUBLIC = {
    "FitResult": ".api",
    "fit": ".api",
    "fit_many": ".api",
    "tasks_from_frame": ".api",
    "Objective": ".types",
    "Race": ".types",
    "Status": ".types",
    "Task": ".types",
}

__all__ = [
    "FitResult",
    "Objective",
    "Race",
    "Status",
    "Task",
    "datasets",
    "fit",
    "fit_many",
    "laws",
    "tasks_from_frame",
    "__version__",
]


def __getattr__(name: str):
    if name == "laws":
        value = importlib.import_module("lawfit.kernels")
    elif name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    else:  # a submodule: lawfit.datasets, lawfit.plan, ...
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'lawfit' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""The execution layer: programs compiled ahead of time per declared shape (`programs`), fixed
lane pools refilled from the task stream (`pool`), a group's solve (`solve`), result rows
(`rows`) and the tuning record (`tuning`)."""

import importlib

__all__ = ["Tuning", "programs"]


def __getattr__(name: str):
    # Imported on first use, so that `batch.warm` loads without the rest of the layer (Equinox).
    if name == "Tuning":
        from .tuning import Tuning

        return Tuning
    if name in ("programs", "pool", "solve", "rows", "archive", "tuning", "warm"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

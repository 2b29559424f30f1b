"""The execution layer: programs compiled ahead of time per declared shape (`programs`), fixed
lane pools refilled from the task stream (`pool`), a group's solve (`solve`), result rows
(`rows`) and the tuning record (`tuning`)."""

from . import programs
from .tuning import Tuning

__all__ = ["Tuning", "programs"]

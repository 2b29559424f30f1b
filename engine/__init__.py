"""lawfit: fit scaling laws in bulk with jit- and vmap-compiled batched solvers.

The public API is flat: `fit`, `fit_many`, `tasks_from_frame`, `laws`, `datasets`, and the shared
types `Task`, `Objective`, `Status`.
"""

import jax

# float64 by default: scaling-law objectives live at 1e-3 and below, where float32 stalls.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from lawfit import kernels as laws  # noqa: E402

from . import datasets  # noqa: E402
from .api import FitResult, fit, fit_many, tasks_from_frame  # noqa: E402
from .types import Objective, Status, Task  # noqa: E402

__all__ = [
    "FitResult",
    "Objective",
    "Status",
    "Task",
    "datasets",
    "fit",
    "fit_many",
    "laws",
    "tasks_from_frame",
    "__version__",
]

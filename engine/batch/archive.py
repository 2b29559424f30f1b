"""Programs serialized to disk (`jax.export`), so that a fresh process loads them instead of tracing.

Tracing and lowering a solver program costs ~0.3-1.3 s on the CPU, several times what loading its
compiled form from the persistent XLA cache costs; an archived program skips the tracing. A program
is archived under a fingerprint of everything that determines it: its key (law, objective, free
parameters, shapes, solver and options), the source of the lawfit package, the jax and jaxlib
versions, the x64 flag and the devices. Laws whose code lives outside lawfit (a user's own Python
`Law`) have no fingerprint and are always traced; formula laws are fingerprinted by their text.

The archive is on only where a directory is set (`lawfit.cli.enable_compile_cache` sets one beside
the XLA cache); a file that cannot be read is ignored and rewritten.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import jax
import jaxlib
import numpy as np

from lawfit import kernels

DIRECTORY: Path | None = None


def enable(directory: str | os.PathLike | None) -> None:
    """Archive programs under `directory` (None turns the archive off)."""
    global DIRECTORY
    DIRECTORY = Path(directory) if directory is not None else None


@functools.cache
def _source_hash() -> str:
    """sha256 over the lawfit package's Python sources (any code change gives new fingerprints)."""
    import lawfit

    digest = hashlib.sha256()
    roots = {Path(lawfit.__file__).parent, Path(kernels.__file__).parent}
    for root in sorted(roots):
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _simple(value) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _identity(value) -> str | None:
    """A stable text for a program key and everything in it (frozen dataclasses of laws, objectives,
    tuples, numbers) that fixes the code it compiles to: a law's functions by lawfit's module and
    name and what their closures hold. None for code outside lawfit or a closure over values that
    cannot be named."""
    if _simple(value):
        return repr(value)
    if isinstance(value, np.ndarray):
        return hashlib.sha256(value.tobytes()).hexdigest() + repr((value.shape, value.dtype.str))
    if isinstance(value, tuple | list):
        parts = [_identity(item) for item in value]
        return None if None in parts else "(" + ", ".join(parts) + ")"
    if isinstance(value, Mapping):
        parts = [_identity(v) for v in value.values()]
        return None if None in parts else repr((tuple(value), parts))
    module = getattr(value, "__module__", None) or type(value).__module__
    if not module.startswith("lawfit"):
        return None
    if module == "lawfit.kernels.formula":
        return module  # formula code is fixed by the law's formula text, inputs and parameters
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = [_identity(getattr(value, f.name)) for f in dataclasses.fields(value)]
        return None if None in parts else f"{type(value).__qualname__}({', '.join(parts)})"
    if not callable(value):
        return None
    parts = [_identity(cell.cell_contents) for cell in getattr(value, "__closure__", None) or ()]
    if None in parts:
        return None
    return f"{module}.{getattr(value, '__qualname__', type(value).__qualname__)}{parts}"


def fingerprint(key, devices: tuple) -> str | None:
    """The archive name of the program `key` placed on `devices`, or None when it cannot be named."""
    described = _identity(key)
    if described is None:
        return None
    context = (
        described,
        _source_hash(),
        jax.__version__,
        jaxlib.__version__,
        bool(jax.config.jax_enable_x64),
        tuple((d.platform, d.device_kind, d.id) for d in devices),
    )
    return hashlib.sha256(repr(context).encode()).hexdigest()[:32]


def load(name: str | None) -> jax.export.Exported | None:
    """The archived program `name`, or None (no archive, not archived yet, or unreadable)."""
    if DIRECTORY is None or name is None:
        return None
    path = DIRECTORY / f"{name}.jaxexport"
    try:
        return jax.export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # missing, half-written by an older version, or not an export: trace instead
        return None


def save(name: str | None, exported: jax.export.Exported) -> None:
    """Write `exported` as `name` (atomically: concurrent processes never see half a file)."""
    if DIRECTORY is None or name is None:
        return
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=DIRECTORY, suffix=".part")
    with os.fdopen(handle, "wb") as out:
        out.write(exported.serialize())
    os.replace(temporary, DIRECTORY / f"{name}.jaxexport")

"""Programs serialized to disk (`jax.export`), so that a fresh process loads them instead of tracing.

Tracing and lowering a solver program costs ~0.3-1.3 s on the CPU, several times what loading its
compiled form from the persistent XLA cache costs; an archived program skips the tracing. A program
is archived under a fingerprint of everything that determines it: its key (law, objective, free
parameters, shapes, solver and options), the source of the lawfit package, the jax and jaxlib
versions, the x64 flag and the devices. Laws whose code lives outside lawfit (a user's own Python
`Law`) have no fingerprint and are always traced; formula laws are fingerprinted by their text.

Beside each export, the compiled executable itself is kept (`jax.experimental.serialize_executable`)
under the same fingerprint plus the machine's (CPU architecture and features, XLA_FLAGS): loading it
skips lowering and the XLA cache lookup (the Chinchilla LM pool program: 0.17 s against 0.39 s).

The archive is on only where a directory is set (`lawfit.cli.enable_compile_cache` sets one beside
the XLA cache); a file that cannot be read is ignored and rewritten. Like the XLA cache, it holds
code that is run when loaded: point it only at a directory of your own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import threading
from collections.abc import Mapping
from pathlib import Path

import jax
import jaxlib
import numpy as np
from jax.experimental import serialize_executable

from lawfit import kernels

from . import warm

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
    return _fingerprint(key, devices, bool(jax.config.jax_enable_x64))


@functools.lru_cache(maxsize=4096)
def _fingerprint(key, devices: tuple, x64: bool) -> str | None:
    # Cached: naming a key walks the whole law (~0.6 ms), and a job's tail asks on every call.
    described = _identity(key)
    if described is None:
        return None
    context = (
        described,
        _source_hash(),
        jax.__version__,
        jaxlib.__version__,
        x64,
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
    """Write `exported` as `name`."""
    if DIRECTORY is not None and name is not None:
        warm.write_atomically(DIRECTORY / f"{name}.jaxexport", exported.serialize())


def _executable_path(name: str) -> Path:
    return warm.executable_path(DIRECTORY, name)


def has(name: str | None) -> bool:
    """Whether the program `name` is archived: its executable for this machine, or its export (which
    the XLA cache usually turns into a load)."""
    if DIRECTORY is None or name is None:
        return False
    return _executable_path(name).is_file() or (DIRECTORY / f"{name}.jaxexport").is_file()


def has_executable(name: str | None) -> bool:
    """Whether the compiled program `name` is archived for this machine."""
    return DIRECTORY is not None and name is not None and _executable_path(name).is_file()


def load_executable(name: str | None, devices: tuple) -> jax.stages.Compiled | None:
    """The compiled program `name` for `devices`, or None (no archive, not saved, or unreadable)."""
    if DIRECTORY is None or name is None:
        return None
    compiled = warm.take(name, devices)  # loaded ahead by the command line (`warm.start`)
    if compiled is None:
        try:
            compiled = warm.load(_executable_path(name), devices)
        except Exception:  # missing, from another jax, or half-written: compile instead
            return None
    warm.record(name, devices)
    return compiled


_LOCAL = threading.local()


def _on_event(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _LOCAL.cache_hit = True


jax.monitoring.register_event_listener(_on_event)


# A compile option at its default value: it changes the XLA cache key, not the code.
_DISTINCT_KEY = {"xla_embed_ir_in_executable": False}

# XLA's CPU compiler with its earlier (non-MLIR) fusion emitters: on the 2-core CPU the lanes' pass
# over their points ran 1.7x faster (0.52 -> 0.30 us a lane, one core, Chinchilla's 24 points),
# Epoch's 4500-start grid 1.2 -> 0.8 s warm, and programs compile faster. Same arithmetic, in the
# same order (the sums still add in point order, lane by lane).
CPU_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def compiler_options(platform: str) -> dict:
    """The compile options lawfit's programs get on `platform`."""
    return dict(CPU_OPTIONS) if platform == "cpu" else {}


def lower(name: str | None, exported: jax.export.Exported, leaves) -> jax.stages.Lowered:
    """`exported` lowered for `leaves`, its module named after the archive name `name`: the XLA cache
    key then differs from one lawfit version to the next, so a version's first compile of a program
    is a real compile whose executable can be archived. (Under one name for all versions, a
    program's HLO unchanged by an upgrade was an XLA-cache hit, which cannot be archived: from the
    third version on such programs were loaded from their exports only.)"""

    def call(*args):
        return exported.call(*args)

    if name is not None:
        call.__name__ = call.__qualname__ = f"lawfit_{name}"
    return jax.jit(call).lower(*leaves)


def compile_and_keep(name: str | None, lowered: jax.stages.Lowered, devices: tuple) -> jax.stages.Compiled:
    """`lowered.compile()` with the compile options of `devices`' platform, its executable archived
    as `name` (and listed for the command line's next run, `warm`) when
    it was compiled here. One that the XLA cache gave back serializes without its code (it fails
    when run), so it is not kept; instead the program is compiled once more under another cache
    key and that one is archived, so that later processes load it rather than lowering it again
    (~0.1-0.3 s a program each: the case of an archived executable lost or unreadable while the XLA
    cache still holds the program)."""
    options = compiler_options(devices[0].platform)
    _LOCAL.cache_hit = False
    compiled = lowered.compile(compiler_options=options or None)
    if not _LOCAL.cache_hit:
        save_executable(name, compiled)
    elif DIRECTORY is not None and name is not None:
        _LOCAL.cache_hit = False
        fresh = lowered.compile(compiler_options=options | _DISTINCT_KEY)
        if not _LOCAL.cache_hit:
            save_executable(name, fresh)
            compiled = fresh
    if has_executable(name):
        warm.record(name, devices)
    return compiled


def save_executable(name: str | None, compiled: jax.stages.Compiled) -> None:
    """Keep `compiled` as `name` for this machine (silently not, where it cannot be serialized)."""
    if DIRECTORY is None or name is None:
        return
    try:
        payload, in_tree, out_tree = serialize_executable.serialize(compiled)
        uses_lapack = "lapack" in compiled.as_text()
        blob = pickle.dumps((payload, in_tree, out_tree, uses_lapack))
    except Exception:
        return
    warm.write_atomically(_executable_path(name), blob)

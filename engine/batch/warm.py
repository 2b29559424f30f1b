"""Warm starts of the command line: the compiled programs that a command line loaded the last time
it ran are loaded again in a background thread as soon as the process starts, while Python imports
the rest of lawfit (Polars, Equinox: ~0.3 s on the 2-core CPU), instead of after planning.

Each command line has a manifest (the names of its programs and their devices, in the order they
were first loaded), rewritten at exit when it changed. A program asked for while it loads is waited
for (`take`); one the manifest did not list is loaded as before (`archive.load_executable`); a
listed one that the run no longer needs costs only its background load. Deserializing runs mostly
outside the GIL. This module imports nothing of lawfit beyond the package itself, so that loading
can start before the rest of it is imported.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import pickle
import platform
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import jax
from jax.experimental import serialize_executable


def cache_directory() -> Path:
    """The persistent XLA cache of the command line: $LAWFIT_CACHE_DIR, else ~/.cache/lawfit/jax."""
    return Path(os.environ.get("LAWFIT_CACHE_DIR", str(Path.home() / ".cache" / "lawfit" / "jax")))


def programs_directory() -> Path:
    """The program archive beside the XLA cache (`archive.enable`)."""
    return cache_directory() / "lawfit-programs"


@functools.cache
def machine() -> str:
    """What compiled code depends on beyond a program's fingerprint: the CPU's architecture and
    features (the executable holds machine code) and the XLA flags it was compiled under."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    context = (platform.machine(), platform.processor(), flags, os.environ.get("XLA_FLAGS", ""))
    return hashlib.sha256(repr(context).encode()).hexdigest()[:16]


def executable_path(directory: Path, name: str) -> Path:
    """Where the compiled program `name` for this machine is archived."""
    return directory / f"{name}-{machine()}.xla"


def load(path: Path, devices: Sequence) -> jax.stages.Compiled:
    """The compiled program archived at `path`, loaded onto `devices` (raises if it cannot be)."""
    payload, in_tree, out_tree, uses_lapack = pickle.loads(path.read_bytes())
    if uses_lapack:
        # Lowering registers the CPU LAPACK kernels; a loaded executable calling them unregistered
        # would crash the process.
        from jax._src.lax import linalg

        linalg.initialize_lapack()
    return serialize_executable.deserialize_and_load(payload, in_tree, out_tree, execution_devices=list(devices))


class _Load:
    """One program loading in the background: its devices' ids, and the executable once loaded
    (None when it could not be)."""

    def __init__(self, device_ids: tuple[int, ...]):
        self.device_ids, self.done, self.compiled = device_ids, threading.Event(), None


_MANIFEST: Path | None = None  # this process's manifest, once `start` ran
_LISTED: list[tuple[str, tuple[int, ...]]] = []  # what it listed when the process started
_LOADING: dict[str, _Load] = {}
_USED: dict[str, tuple[int, ...]] = {}  # programs this process loaded or archived, in order
STATS = {"taken": 0}  # programs taken from the loads started ahead


def manifest_path(directory: Path, command: Sequence[str]) -> Path:
    key = hashlib.sha256("\0".join(command).encode()).hexdigest()[:24]
    return directory / "manifests" / f"{key}.txt"


def start(command: Sequence[str], directory: Path) -> None:
    """Start loading the programs that `command` loaded last time from the archive `directory`, and
    have this run's programs listed for it at exit."""
    global _MANIFEST
    if _MANIFEST is not None:
        return
    _MANIFEST = manifest_path(directory, command)
    _LISTED[:] = _read(_MANIFEST)
    for name, device_ids in _LISTED:
        _LOADING[name] = _Load(device_ids)
    loader = None
    if _LISTED:
        loader = threading.Thread(target=_load_listed, args=(directory, list(_LOADING.items())), daemon=True)
        loader.start()
    atexit.register(_at_exit, loader)


def _at_exit(loader: threading.Thread | None) -> None:
    # A command that ends before its programs have loaded (a bad input file) lets the loads finish
    # first: the process's teardown must not pull the devices from under them.
    if loader is not None:
        loader.join(timeout=30)
    write_manifest()


def _read(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    try:
        lines = path.read_text().split()
    except OSError:
        return []
    listed = []
    for line in lines:
        name, _, ids = line.partition(":")
        if name and ids and all(part.isdigit() for part in ids.split(",")):
            listed.append((name, tuple(int(part) for part in ids.split(","))))
    return listed


def _load_listed(directory: Path, loads: list[tuple[str, _Load]]) -> None:
    devices = {device.id: device for device in jax.local_devices()}
    for name, entry in loads:
        try:
            entry.compiled = load(executable_path(directory, name), [devices[i] for i in entry.device_ids])
        except Exception:  # gone, from another version, or other devices: loaded the usual way
            entry.compiled = None
        finally:
            entry.done.set()


def take(name: str, devices: Sequence) -> jax.stages.Compiled | None:
    """The program `name` for `devices` if it was loaded ahead (waiting for its load), else None."""
    entry = _LOADING.pop(name, None)
    if entry is None or entry.device_ids != tuple(device.id for device in devices):
        return None
    entry.done.wait()
    if entry.compiled is not None:
        STATS["taken"] += 1
    return entry.compiled


def record(name: str, devices: Sequence) -> None:
    """Note that this run loaded (or archived) the program `name` for `devices`."""
    if _MANIFEST is not None:
        _USED.setdefault(name, tuple(device.id for device in devices))


def write_manifest() -> None:
    """List this run's programs for its command line, if any and if they changed (atomically)."""
    if _MANIFEST is None or not _USED or list(_USED.items()) == _LISTED:
        return
    text = "".join(f"{name}:{','.join(map(str, ids))}\n" for name, ids in _USED.items())
    try:
        write_atomically(_MANIFEST, text.encode())
    except OSError:  # a read-only cache: the next run loads its programs the usual way
        pass


def write_atomically(path: Path, payload: bytes) -> None:
    """Write `path` so that concurrent processes never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(handle, "wb") as out:
        out.write(payload)
    os.replace(temporary, path)


def reset() -> None:
    """Forget this process's manifest and loads (tests start over with it)."""
    global _MANIFEST
    _MANIFEST = None
    _LISTED.clear()
    _LOADING.clear()
    _USED.clear()
    STATS.update(taken=0)

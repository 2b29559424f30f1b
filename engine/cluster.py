"""Which share of a job this process runs: one process, or `jax.distributed` across processes/hosts.

Fit tasks are independent, so processes need no collectives while solving: each takes every
process_count-th chunk of the task stream and writes its own Parquet files into the shared output
directory; a barrier then lets process 0 assemble the results.
"""

from __future__ import annotations

import dataclasses
import os

import jax

# Flags fall back to these (then to jax's own cluster detection, e.g. SLURM).
ENV = {
    "coordinator": ("LAWFIT_COORDINATOR", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("LAWFIT_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("LAWFIT_PROCESS_ID", "JAX_PROCESS_ID"),
}


@dataclasses.dataclass(frozen=True)
class Share:
    index: int = 0
    count: int = 1

    @property
    def lead(self) -> bool:
        return self.index == 0

    def barrier(self, name: str) -> None:
        """Wait until every process reaches `name` (no-op alone)."""
        if self.count > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)


ALONE = Share()


def _env(name: str) -> str | None:
    for key in ENV[name]:
        if os.environ.get(key):
            return os.environ[key]
    return None


def connect(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> Share:
    """`jax.distributed.initialize` from flags or the environment; returns this process's share."""
    coordinator = coordinator or _env("coordinator")
    num = num_processes if num_processes is not None else _env("num_processes")
    pid = process_id if process_id is not None else _env("process_id")
    try:
        num = None if num is None else int(num)
        pid = None if pid is None else int(pid)
    except ValueError:
        raise ValueError(f"--num-processes/--process-id: expected integers, got {num!r} and {pid!r}") from None
    if num is not None and pid is not None and not 0 <= pid < num:
        raise ValueError(f"--process-id: expected 0 <= id < {num}, got {pid}")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num, process_id=pid)
    _connected[0] = True
    return Share(jax.process_index(), jax.process_count())


_connected = [False]


def disconnect() -> None:
    """Leave the distributed job now, while this process is whole, rather than from an interpreter-exit
    hook: a process that exits without reaching the shutdown barrier makes the others abort."""
    if _connected[0]:
        jax.distributed.shutdown()
        _connected[0] = False

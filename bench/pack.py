"""Packing 1 million observation rows into padded device buckets: `lawfit.data.pack_frame`
(vectorised) against a per-task loop (partition_by + numpy), on the same table.

    python bench/pack.py          # writes bench/results/pack.json
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
from common import write

from lawfit.data import pack_frame
from lawfit.plan import bucket_size


def table(n_rows: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 150, n_rows // 50)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_rows)]
    n = int(sizes.sum())
    return pl.DataFrame(
        {
            "task": np.repeat(np.arange(sizes.size), sizes),
            "params": rng.uniform(1e7, 1e10, n),
            "tokens": rng.uniform(1e9, 1e12, n),
            "value": rng.uniform(2, 4, n),
        }
    ).sample(fraction=1.0, shuffle=True, seed=seed)


def per_task_loop(frame: pl.DataFrame) -> int:
    """The straightforward way: one partition and a few numpy copies per task."""
    n_tasks = 0
    for part in frame.partition_by("task", maintain_order=False):
        n = part.height
        n_pad = bucket_size(n)
        inputs = np.empty((n_pad, 2))
        inputs[:n] = part.select("params", "tokens").to_numpy()
        inputs[n:] = inputs[0]
        target = np.empty(n_pad)
        target[:n] = part["value"].to_numpy()
        target[n:] = target[0]
        n_tasks += 1
    return n_tasks


def main() -> None:
    frame = table(1_000_000)
    t0 = time.perf_counter()
    buckets = pack_frame(frame, task="task", columns=("params", "tokens"))
    vectorised = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_tasks = per_task_loop(frame)
    loop = time.perf_counter() - t0
    packed_tasks = sum(b.tasks.size for b in buckets)
    assert packed_tasks == n_tasks
    figures = {
        "rows": frame.height,
        "tasks": n_tasks,
        "buckets": len(buckets),
        "padded_cells": int(sum(b.mask.size for b in buckets)),
        "pack_frame_seconds": vectorised,
        "per_task_loop_seconds": loop,
        "speedup": loop / vectorised,
        "rows_per_second": frame.height / vectorised,
    }
    print(
        f"{frame.height} rows, {n_tasks} tasks, {len(buckets)} buckets: pack_frame {vectorised:.3f} s, "
        f"per-task loop {loop:.3f} s ({loop / vectorised:.1f}x)"
    )
    print("wrote", write("pack", figures))


if __name__ == "__main__":
    main()

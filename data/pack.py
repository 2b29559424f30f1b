"""Pack a long observation table into padded, masked device arrays, bucketed by points per task,
without per-row Python: a sort, a per-task row rank, and one scatter per bucket.

    buckets = pack_frame(frame, task="task_id", columns=("params", "tokens"), target="value")
    for bucket in buckets:
        bucket.inputs   # [tasks, n_pad, len(columns)]
        bucket.target   # [tasks, n_pad]
        bucket.mask     # [tasks, n_pad] (True on real points)
        bucket.tasks    # [tasks] task ids, in the bucket's row order
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import polars as pl


@dataclasses.dataclass(frozen=True)
class Bucket:
    n_pad: int
    tasks: np.ndarray  # [tasks]
    n_points: np.ndarray  # [tasks]
    inputs: np.ndarray  # [tasks, n_pad, n_columns]
    target: np.ndarray  # [tasks, n_pad]
    mask: np.ndarray  # [tasks, n_pad]


def bucket_sizes(n_points: np.ndarray) -> np.ndarray:
    """Pad length for tasks of `n_points`: 8, then multiples of 16 up to 256, then powers of two,
    so few programs get compiled while padding stays small where most tasks are (tens to hundreds
    of points)."""
    n = np.asarray(n_points, dtype=np.int64)
    sixteen = -(-n // 16) * 16
    power = np.left_shift(1, np.ceil(np.log2(np.maximum(n, 1))).astype(np.int64))
    # Exact next power of two (the float log2 can be off by one at the edges).
    power = np.where(power < n, power * 2, np.where(power // 2 >= n, power // 2, power))
    # Beyond 256: half octaves (1 or 1.5 x a power of two), so long series pad by <= 50 %, not 100 %.
    half = np.where(n <= power * 3 // 4, power * 3 // 4, power)
    return np.where(n <= 8, 8, np.where(n <= 256, sixteen, half))


def pack_frame(frame: pl.DataFrame, *, task: str, columns: Sequence[str], target: str = "value") -> list[Bucket]:
    """One `Bucket` per padded length. Padding repeats each task's first point (so laws stay
    finite there) and is masked out."""
    missing = [c for c in (task, *columns, target) if c not in frame.columns]
    if missing:
        raise ValueError(f"pack_frame: missing column(s) {missing}; the frame has {frame.columns}")
    ordered = frame.select(task, *columns, target).sort(task, maintain_order=True)
    task_ids = ordered[task].to_numpy()
    values = ordered.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy()
    targets = ordered[target].cast(pl.Float64).to_numpy()
    starts = np.flatnonzero(np.r_[True, task_ids[1:] != task_ids[:-1]])
    counts = np.diff(np.r_[starts, task_ids.size])
    rank = np.arange(task_ids.size) - np.repeat(starts, counts)  # position of each row in its task
    sizes = bucket_sizes(counts)
    buckets = []
    for n_pad in np.unique(sizes):
        chosen = np.flatnonzero(sizes == n_pad)  # tasks in this bucket
        n_tasks = chosen.size
        row_of_task = np.full(starts.size, -1)
        row_of_task[chosen] = np.arange(n_tasks)
        owner = np.repeat(row_of_task, counts)  # bucket row of each observation, -1 elsewhere
        take = owner >= 0
        inputs = np.repeat(values[starts[chosen]][:, None, :], n_pad, axis=1)
        target_arr = np.repeat(targets[starts[chosen]][:, None], n_pad, axis=1)
        mask = np.zeros((n_tasks, n_pad), dtype=bool)
        inputs[owner[take], rank[take]] = values[take]
        target_arr[owner[take], rank[take]] = targets[take]
        mask[owner[take], rank[take]] = True
        buckets.append(Bucket(int(n_pad), task_ids[starts[chosen]], counts[chosen], inputs, target_arr, mask))
    return buckets

"""Streaming, resumable job runner: a stream of tasks is cut into fixed chunks, streamed through the
engine's lane pools (`fit_chunks`: one pool per program for the whole job, so chunks overlap and the
job has one tail), and each chunk's rows are written as one Parquet file of a dataset directory.

- Memory is bounded by the chunk, not the job: tasks are drawn from an iterator chunk by chunk, and a
  chunk's rows leave memory once written.
- While the device solves, one host thread draws and hashes the next chunk and another writes the
  rows of the last finished chunk (Parquet, written to a temporary name, fsynced, then renamed: a
  killed run leaves only complete files).
- Resume: every row carries its task's hash; a rerun into the same directory skips finished tasks.
  Chunk boundaries depend only on task positions, so a resumed chunk is solved with exactly the
  batch it had, and its rows are bit-identical to an uninterrupted run's.
- Several processes (`jax.distributed`) share a job: process p solves the chunks c with
  c % process_count == p and writes its own files; `read` joins them.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from .api import fit_chunks
from .progress import Progress
from .types import Task

PART_GLOB = "part-*.parquet"
MANIFEST = "job.json"


@dataclasses.dataclass(frozen=True)
class Summary:
    """What one `run` call did."""

    out: Path
    n_tasks: int  # tasks in the job (all processes)
    n_skipped: int  # found finished in `out` (this process's share)
    n_solved: int  # solved by this call
    n_chunks_written: int
    seconds: float


def _part_path(out: Path, chunk: int) -> Path:
    return out / f"part-{chunk:06d}.parquet"


def finished_keys(out: str | Path) -> set[str]:
    """Task hashes of every row already written under `out` (reads only that column)."""
    out = Path(out)
    keys: set[str] = set()
    for path in sorted(out.glob(PART_GLOB)):
        keys.update(pl.read_parquet(path, columns=["task_hash"])["task_hash"].to_list())
    return keys


def read(out: str | Path) -> pl.DataFrame:
    """Every row under `out`, one per task, in task order (parts of different laws share no param
    columns; missing ones are null)."""
    paths = sorted(Path(out).glob(PART_GLOB))
    if not paths:
        raise FileNotFoundError(f"no result files ({PART_GLOB}) under {out}")
    frames = [pl.read_parquet(path) for path in paths]
    return pl.concat(frames, how="diagonal_relaxed").sort("task_index")


def rows_of(tasks: Iterable[Task], out: str | Path) -> list[dict[str, Any]]:
    """The row written under `out` for each task, in the order given. Looked up by task hash: the
    folder may also hold rows of an earlier job with other data or laws."""
    extra = ["task_index", "chunk", "process"]
    by_key = {row["task_hash"]: row for row in read(out).drop(extra).to_dicts()}
    return [by_key[task.key()] for task in tasks]


def _tmp_path(path: Path, process_index: int) -> Path:
    """Where `path` is written before its rename. Named per process: processes sharing a directory
    must never write, or clear away, each other's unfinished files."""
    return path.with_name(f"{path.name}.p{process_index}.tmp")


def _write_atomic(frame: pl.DataFrame, path: Path, process_index: int) -> None:
    tmp = _tmp_path(path, process_index)
    frame.write_parquet(tmp, compression="zstd")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _check_manifest(out: Path, spec: Mapping[str, Any]) -> None:
    """The directory's job spec must match this run's: resuming with another solver or chunk size
    would mix rows of two different jobs."""
    path = out / MANIFEST
    if path.exists():
        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in spec.items() if saved.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
            raise ValueError(f"{out} holds results of a different job ({detail}); use another --out or remove it")
        return
    tmp = _tmp_path(path, 0)  # only process 0 writes the manifest
    tmp.write_text(json.dumps(dict(spec), indent=1))
    os.replace(tmp, path)


def _chunks(tasks: Iterable[Task], chunk_tasks: int) -> Iterator[tuple[int, list[Task]]]:
    iterator = iter(tasks)
    for chunk in itertools.count():
        batch = list(itertools.islice(iterator, chunk_tasks))
        if not batch:
            return
        yield chunk, batch


def run(
    tasks: Iterable[Task],
    out: str | Path,
    *,
    total: int | None = None,
    chunk_tasks: int = 2048,
    progress: bool | None = None,
    process_index: int = 0,
    process_count: int = 1,
    **fit_options: Any,
) -> Summary:
    """Solve every task with `fit_chunks(**fit_options)` (`fit_many`'s options; every chunk streamed
    through the same lane pools), writing `out/part-NNNNNN.parquet` per chunk of `chunk_tasks` tasks
    (rows gain `task_index`, the task's position in the stream, `chunk` and `process`).

    tasks: any iterable (a generator keeps memory bounded); total: its length, for the progress bar
        when it has no len().
    process_index / process_count: this process's share of a multi-process job.
    """
    if chunk_tasks < 1:
        raise ValueError(f"chunk_tasks must be >= 1, got {chunk_tasks}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"*.p{process_index}.tmp"):  # left by this process's killed run; never a finished file
        stale.unlink()
    spec = {"chunk_tasks": chunk_tasks} | dict(sorted(fit_options.items()))
    spec = json.loads(json.dumps(spec, default=str))  # as the manifest will read back
    if process_index == 0:
        _check_manifest(out, spec)
    done = finished_keys(out)
    if total is None and hasattr(tasks, "__len__"):
        total = len(tasks)  # type: ignore[arg-type]
    share = (
        None
        if total is None
        else sum(
            min(chunk_tasks, total - start)
            for chunk, start in enumerate(range(0, total, chunk_tasks))
            if chunk % process_count == process_index
        )
    )
    bar = Progress(share or 0, progress)
    start_time = time.perf_counter()
    n_skipped = n_solved = n_written = 0

    def draw(source):
        """Next chunk of this process's share: (chunk, tasks to solve, their positions, n finished)."""
        for chunk, batch in source:
            if chunk % process_count != process_index:
                continue
            keys = [task.key() for task in batch]
            todo = [i for i, key in enumerate(keys) if key not in done]
            return chunk, [batch[i] for i in todo], [chunk * chunk_tasks + i for i in todo], len(batch) - len(todo)
        return None

    def write(frame: pl.DataFrame, chunk: int) -> None:
        path = _part_path(out, chunk)
        if path.exists():  # the chunk was partly done by a run with other boundaries
            path = out / f"part-{chunk:06d}-{time.time_ns()}.parquet"
        _write_atomic(frame, path, process_index)

    def drawn_chunks():
        """This process's chunks with tasks left to solve, drawn (and hashed) one ahead in a thread."""
        nonlocal n_skipped
        source = _chunks(tasks, chunk_tasks)
        with concurrent.futures.ThreadPoolExecutor(1) as drawer:
            pending_draw = drawer.submit(draw, source)
            while (drawn := pending_draw.result()) is not None:
                pending_draw = drawer.submit(draw, source)
                n_skipped += drawn[3]
                bar.update(drawn[3])
                if drawn[1]:
                    placed[next(numbers)] = drawn
                    yield drawn[1]

    # Drawn chunks with work, numbered as fit_chunks numbers them; dropped once written, so memory
    # holds only the chunks in flight.
    placed: dict[int, tuple] = {}
    numbers = itertools.count()
    # One stream through the engine's lane pools: a chunk's last fits overlap the next chunk's first.
    with concurrent.futures.ThreadPoolExecutor(1) as writer:
        pending_write = None
        # Chunks are written as they finish: a chunk waiting for one slow restart holds back no other.
        for number, rows in fit_chunks(drawn_chunks(), progress=bar, ordered=False, **fit_options):
            chunk, batch, positions, _ = placed.pop(number)
            rows = rows.with_columns(
                pl.Series("task_index", positions, dtype=pl.Int64),
                pl.lit(chunk, dtype=pl.Int64).alias("chunk"),
                pl.lit(process_index, dtype=pl.Int64).alias("process"),
            )
            if pending_write is not None:
                pending_write.result()  # surfaces a write error; keeps at most one chunk in flight
            pending_write = writer.submit(write, rows, chunk)
            n_solved += len(batch)
            n_written += 1
        if pending_write is not None:
            pending_write.result()
    bar.close()
    n_tasks = total if total is not None else n_skipped + n_solved
    return Summary(out, n_tasks, n_skipped, n_solved, n_written, time.perf_counter() - start_time)

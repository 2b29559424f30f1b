"""Public entry points: `fit` (one task) and `fit_many` (thousands at once, one row per task).

The execution layer behind them is `lawfit.batch`: tasks are grouped by compiled program
(`plan.group`), each group's starts are made and its (task, restart) units streamed through a
fixed pool of lanes (`batch.pool`), and each task gets one row (`batch.rows`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import polars as pl

from lawfit import kernels
from lawfit.data.schema import with_flops

from . import solvers
from .batch import rows as result_rows
from .batch.solve import Runner
from .batch.tuning import DEFAULT as DEFAULT_TUNING
from .batch.tuning import Tuning
from .plan import TaskError, group, plainly_valid, prepare, varpro_or_grid
from .progress import Progress
from .types import Objective, Race, Task

# Epoch/Hoffmann approach 3: Huber(1e-3) on log residuals, summed.
DEFAULT_OBJECTIVE = Objective()


def fit_many(
    tasks: Sequence[Task] | Any,
    *,
    law: str | Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
    group_by: Sequence[str] = (),
    objective: Objective | str = DEFAULT_OBJECTIVE,
    init: Any = "varpro",
    solver: str = "lm",
    max_steps: int | None = None,
    varpro_starts: int = 8,
    screen_starts: int = 8,
    keep_restarts: bool = False,
    at_best_rtol: float = 1e-6,
    race: Race | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    solver_options: Mapping[str, Any] | None = None,
    progress: bool | Progress | None = None,
) -> pl.DataFrame:
    """Fit every task; one result row per task, in the order given.

    Tasks sharing a law, objective, free-parameter set and number of restarts are solved by one
    compiled program: a fixed pool of lanes that takes the tasks' (task, restart) units as lanes
    come free (`lawfit.batch.pool`). Tasks whose data are unusable get a row with status
    `invalid-input` / `too-few-points` and a message; they never stop the others. A bad
    configuration (unknown law or parameter, malformed starts) raises ValueError naming the task.
    The rows do not depend on how the tasks are chunked or on timing.

    max_steps: driver steps (evaluations) per restart at most; the solver's own default when None.
    varpro_starts: nonlinear starts taken from the variable-projection scan (init="varpro").
    screen_starts: with init="screen", the objective is evaluated at every grid start and the
        solver runs from the best `screen_starts` of them; for a law whose default starts are random
        draws, at 16 x its number of draws, cut into `screen_starts` blocks, and the solver runs from
        each block's best (among the draws that can move every parameter).
    keep_restarts: add list columns with every restart's objective, status, iterations and params.
    at_best_rtol: a restart counts towards `n_at_best` when its objective <= best * (1 + rtol).
    race: stop restarts far behind their task's best at checkpoints (`Race`; they end `pruned`);
        None (default) runs every restart to its end.
    tuning: pool sizes and refill cadence (`lawfit.batch.Tuning`).
    progress: a progress bar (fits done, fits/s, ETA) on stderr; None = only on a terminal for >= 100 tasks;
        a `Progress` to advance (a longer job's bar), which is left open.

    `tasks` may also be a table (Polars, Arrow, pandas or a dict of columns): then every law in `law` is
    fitted to every group of rows (`group_by`), with `columns` mapping law inputs and "value" to column
    names, `objective` and `init` for all of them (laws without a linear structure start from their grid
    when init is "varpro"); the rows carry the law and the group labels.
    """
    if not isinstance(tasks, Sequence) or (tasks and not isinstance(tasks[0], Task)):
        if law is None:
            raise ValueError("fit_many on a table needs law= (a law name or a list of them)")
        mapping = dict(columns or {})
        target = mapping.pop("value", "value")
        laws = [law] if isinstance(law, str | kernels.Law) else list(law)
        tasks = [
            task
            for name in laws
            for task in tasks_from_frame(
                tasks,
                name,
                columns=mapping,
                target=target,
                group_by=group_by,
                objective=objective,
                init=varpro_or_grid(kernels.get(name), init),
            )
        ]
    own_bar = not isinstance(progress, Progress)
    bar = Progress(len(tasks), progress) if own_bar else progress
    options = dict(
        solver=solver,
        max_steps=max_steps,
        varpro_starts=varpro_starts,
        screen_starts=screen_starts,
        keep_restarts=keep_restarts,
        at_best_rtol=at_best_rtol,
        race=race,
        tuning=tuning,
        solver_options=solver_options,
    )
    ((_, rows),) = fit_chunks([tasks], progress=bar, **options)
    if own_bar:
        bar.close()
    return rows


@dataclasses.dataclass
class _Chunk:
    """A chunk in flight: the rows of tasks that could not be fitted, each solved group's rows as
    they come, and how many groups are still solving."""

    failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    groups: list[pl.DataFrame] = dataclasses.field(default_factory=list)
    open: int = 0

    def frame(self) -> pl.DataFrame:
        """Every row, in the chunk's task order."""
        parts = self.groups + ([pl.from_dicts(self.failed, infer_schema_length=None)] if self.failed else [])
        return pl.concat(parts, how="diagonal_relaxed").sort("_index").drop("_index")


def fit_chunks(
    chunks: Iterable[Sequence[Task]],
    *,
    solver: str = "lm",
    max_steps: int | None = None,
    varpro_starts: int = 8,
    screen_starts: int = 8,
    keep_restarts: bool = False,
    at_best_rtol: float = 1e-6,
    race: Race | None = None,
    tuning: Tuning = DEFAULT_TUNING,
    solver_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    ahead: int = 4,
    ordered: bool = True,
) -> Iterator[tuple[int, pl.DataFrame]]:
    """(chunk number, `fit_many`'s rows for it) for each chunk of tasks, with the chunks streamed
    through the same lane pools: the lanes that one chunk's last fits leave free take the next
    chunk's first fits, so a long job has one tail, not one per chunk. At most `ahead` + 1 chunks
    are unfinished at once. ordered: yield in chunk order; else as chunks finish (a chunk waiting
    for one slow restart then does not hold back the ones after it). Options as for `fit_many`;
    progress: a `Progress` advanced as tasks finish."""
    if solver not in solvers.SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; expected one of {sorted(solvers.SOLVERS)}")
    if varpro_starts < 1:
        raise ValueError(f"varpro_starts must be >= 1, got {varpro_starts}")
    if screen_starts < 1:
        raise ValueError(f"screen_starts must be >= 1, got {screen_starts}")
    budget = int(max_steps or solvers.SOLVERS[solver].max_steps)
    options = tuple(sorted((solver_options or {}).items()))
    runner = Runner(solver, options, tuning, budget, progress.update if progress is not None else None, race)
    row_options = dict(solver=solver, at_best_rtol=at_best_rtol, keep_restarts=keep_restarts)

    def open_chunk(tasks: Sequence[Task]) -> _Chunk:
        chunk = _Chunk()
        prepared = []
        valid = plainly_valid(tasks)
        for index, task in enumerate(tasks):
            try:
                prepared.append(prepare(index, task, valid[index]))
            except TaskError as err:
                chunk.failed.append({"_index": index} | result_rows.failed(task, err.status, str(err), solver))
            except ValueError as err:
                raise ValueError(f"task {index} ({dict(task.labels) or task.law_name}): {err}") from None
        if progress is not None:
            progress.update(len(tasks) - len(prepared))

        def done(grp, outcome) -> None:
            chunk.groups.append(result_rows.solved(grp, outcome, **row_options))
            chunk.open -= 1

        groups = group(prepared, varpro_starts, screen_starts)
        chunk.open = len(groups)
        for grp in groups:
            runner.add(grp, done)
        return chunk

    in_flight: dict[int, _Chunk] = {}
    source = enumerate(chunks)
    exhausted = False
    while True:
        while not exhausted and runner.hungry and len(in_flight) <= ahead:
            try:
                number, tasks = next(source)
            except StopIteration:
                exhausted = True
                break
            in_flight[number] = open_chunk(list(tasks))
        for number in list(in_flight):
            if in_flight[number].open:
                if ordered:
                    break
                continue
            yield number, in_flight.pop(number).frame()
        if not runner.working:
            if exhausted and not in_flight:
                return
            if exhausted:
                raise RuntimeError("fit_chunks: chunks left open with no fit running (a scheduler bug)")
            continue
        runner.step()


def _as_frame(data) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, Mapping):
        return pl.DataFrame({k: np.asarray(v) for k, v in data.items()})
    try:
        return pl.from_pandas(data) if hasattr(data, "to_numpy") and hasattr(data, "iloc") else pl.from_arrow(data)
    except Exception as err:  # noqa: BLE001 - report what was passed
        raise TypeError(
            f"data must be a Polars/pandas DataFrame, an Arrow table or a dict of arrays, got {type(data).__name__}"
        ) from err


def tasks_from_frame(
    data,
    law: str | kernels.Law,
    *,
    columns: Mapping[str, str] | None = None,
    target: str = "value",
    weights: str | None = None,
    group_by: Sequence[str] = (),
    objective: Objective | str = DEFAULT_OBJECTIVE,
    init: Any = "grid",
    fixed: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[Task]:
    """One task per group of rows of `data` (all rows when `group_by` is empty).

    columns: maps the law's input names to column names (e.g. {"params": "N", "tokens": "D"});
    `flops` falls back to 6 * params * tokens when the column is absent.
    """
    frame = _as_frame(data)
    law = kernels.get(law)
    if law.outputs:
        frame = kernels.melt_outputs(frame, law, value=target)  # a point per (row, output)
    objective = Objective.parse(objective)
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(law.inputs))
    if unknown:
        raise ValueError(f"columns: {unknown} are not inputs of law {law.name!r} (it reads {law.inputs})")
    needed = {name: columns.get(name, name) for name in law.inputs}
    if "flops" in needed and needed["flops"] not in frame.columns:
        frame = with_flops(frame, needed["flops"])
    for role, column in list(needed.items()) + [("target", target)] + ([("weights", weights)] if weights else []):
        if column not in frame.columns:
            raise ValueError(
                f"missing column {column!r} (needed as {role} by law {law.name!r}); available columns: {frame.columns}"
            )
    for column in group_by:
        if column not in frame.columns:
            raise ValueError(f"group_by: missing column {column!r}; available columns: {frame.columns}")
    parts = frame.partition_by(list(group_by), as_dict=True, maintain_order=True) if group_by else {(): frame}
    tasks = []
    for key, part in parts.items():
        key = key if isinstance(key, tuple) else (key,)
        tasks.append(
            Task(
                law=law,
                inputs=part.select([pl.col(c).cast(pl.Float64) for c in needed.values()]).to_numpy(),
                target=part[target].cast(pl.Float64).to_numpy(),
                weights=part[weights].cast(pl.Float64).to_numpy() if weights else None,
                objective=objective,
                init=init,
                fixed=fixed,
                labels=dict(zip(group_by, key, strict=True)),
                seed=seed,
            )
        )
    return tasks


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The outcome of `fit`: best parameters (fit space and derived), objective, status, and the
    full result row (`row`) including every restart (`restarts`)."""

    law: kernels.Law
    params: dict[str, float]
    theta: np.ndarray
    objective: float | None
    status: str
    row: pl.DataFrame
    restarts: pl.DataFrame

    def predict(self, inputs) -> np.ndarray:
        """Predictions at raw inputs [n_points, len(law.inputs)]."""
        raw = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
        if raw.shape[1] != len(self.law.inputs) and raw.shape[0] == len(self.law.inputs):
            raw = raw.T
        return np.asarray(self.law.predict_raw(jnp.asarray(self.theta), jnp.asarray(raw)))


def fit(
    law: str | kernels.Law,
    data,
    *,
    columns: Mapping[str, str] | None = None,
    target: str = "value",
    weights: str | None = None,
    objective: Objective | str = DEFAULT_OBJECTIVE,
    init: Any = "grid",
    fixed: Mapping[str, float] | None = None,
    solver: str = "lm",
    max_steps: int | None = None,
    varpro_starts: int = 8,
    seed: int = 0,
) -> FitResult:
    """Fit one law to one point set (a DataFrame, Arrow table or dict of columns).

    Raises ValueError naming the column/parameter when the data cannot be fitted.
    """
    (task,) = tasks_from_frame(
        data,
        law,
        columns=columns,
        target=target,
        weights=weights,
        objective=objective,
        init=init,
        fixed=fixed,
        seed=seed,
    )
    try:
        prepare(0, task)
    except TaskError as err:
        raise ValueError(str(err)) from None
    row = fit_many([task], solver=solver, max_steps=max_steps, varpro_starts=varpro_starts, keep_restarts=True)
    record = row.row(0, named=True)
    law = kernels.get(law)
    restarts = pl.DataFrame(
        {
            "restart": np.arange(record["n_restarts"]),
            "objective": record["restart_objective"],
            "status": record["restart_status"],
            "iterations": record["restart_iterations"],
        }
    ).with_columns(pl.Series("params", record["restart_params"]))
    theta = np.asarray(record["params"], dtype=np.float64)
    return FitResult(
        law=law,
        params=law.natural(theta),
        theta=theta,
        objective=record["objective"],
        status=record["status"],
        row=row,
        restarts=restarts,
    )

"""fit / fit_many behaviour: bad input, batched status codes, restarts, fixed parameters."""

import dataclasses
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import lawfit
from lawfit.types import Objective, Status, Task

TRUTH = np.array([6.0, 7.0, 0.5, 0.33, 0.36])


def _chinchilla_frame(n=30, seed=0, noise=0.005):
    rng = np.random.default_rng(seed)
    params = np.exp(rng.uniform(17, 22, n))
    tokens = np.exp(rng.uniform(20, 25, n))
    law = lawfit.laws.get("chinchilla")
    loss = np.asarray(law.predict_raw(TRUTH, np.c_[params, tokens])) * np.exp(rng.normal(0, noise, n))
    return pl.DataFrame({"params": params, "tokens": tokens, "value": loss})


def test_fit_recovers_parameters_varpro_and_grid():
    frame = _chinchilla_frame(noise=0.0)
    for init in ("varpro", "grid"):
        result = lawfit.fit("chinchilla", frame, init=init, objective="squared-log")
        assert result.status == "converged"
        np.testing.assert_allclose(result.theta, TRUTH, rtol=1e-5, atol=1e-6)
        assert result.objective < 1e-20
    assert result.restarts.height == 4500
    assert set(result.restarts.columns) >= {"restart", "objective", "status", "iterations", "params"}
    np.testing.assert_allclose(result.predict(np.c_[frame["params"], frame["tokens"]]), frame["value"], rtol=1e-8)


def test_fit_many_row_schema_and_provenance():
    tasks = lawfit.tasks_from_frame(
        pl.concat(
            [
                _chinchilla_frame(seed=1).with_columns(pl.lit("x").alias("family")),
                _chinchilla_frame(seed=2).with_columns(pl.lit("y").alias("family")),
            ]
        ),
        "chinchilla",
        group_by=["family"],
        init="varpro",
    )
    out = lawfit.fit_many(tasks)
    assert out["family"].to_list() == ["x", "y"]
    for column in (
        "task_hash",
        "law",
        "a",
        "b",
        "e",
        "alpha",
        "beta",
        "A",
        "B",
        "E",
        "params",
        "objective",
        "status",
        "status_code",
        "iterations",
        "evaluations",
        "best_restart",
        "n_restarts",
        "n_at_best",
        "log10_cond",
        "solver",
        "objective_spec",
        "lawfit_version",
        "dtype",
        "device",
        "seed",
        "data_hash",
    ):
        assert column in out.columns, column
    assert out["dtype"].to_list() == ["float64", "float64"]
    assert out["objective_spec"][0] == "huber(0.001)-log-sum"
    assert out["n_restarts"].to_list() == [8, 8]
    assert out["task_hash"].n_unique() == 2


def test_task_hash_is_stable_and_sensitive():
    frame = _chinchilla_frame()
    (a,) = lawfit.tasks_from_frame(frame, "chinchilla")
    (b,) = lawfit.tasks_from_frame(frame, "chinchilla")
    (c,) = lawfit.tasks_from_frame(frame, "chinchilla", objective="squared-log")
    assert a.key() == b.key() != c.key()


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 3).then(-1.0).otherwise(pl.col("params")).alias("params")
            ),
            Status.INVALID_INPUT,
            r"input 'params': must be > 0 .* rows \[3\]",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise(pl.col("value")).alias("value")
            ),
            Status.INVALID_INPUT,
            r"target: non-finite values \(NaN/inf\) at rows \[2\]",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 5).then(float("inf")).otherwise(pl.col("tokens")).alias("tokens")
            ),
            Status.INVALID_INPUT,
            r"input 'tokens': non-finite .* rows \[5\]",
        ),
        (lambda f: f.head(3), Status.TOO_FEW_POINTS, "too few points: 3 point"),
        (lambda f: f.with_columns(pl.lit(0.0).alias("value")), Status.INVALID_INPUT, r"target: must be > 0"),
    ],
)
def test_bad_task_gets_status_and_never_sinks_the_batch(mutate, status, message):
    good = lawfit.tasks_from_frame(_chinchilla_frame(), "chinchilla", init="varpro")
    bad = lawfit.tasks_from_frame(mutate(_chinchilla_frame()), "chinchilla", init="varpro")
    out = lawfit.fit_many(good + bad + good)
    assert out["status"].to_list() == ["converged", status.label, "converged"]
    assert out["message"][1] is not None
    import re

    assert re.search(message, out["message"][1]), out["message"][1]
    with pytest.raises(ValueError, match=message):
        lawfit.fit("chinchilla", mutate(_chinchilla_frame()), init="varpro")


def test_checks_in_bulk_pass_exactly_the_tasks_that_pass_one_by_one():
    """`plan.plainly_valid` checks a chunk's values together; a task it passes must pass every check
    of `prepare`, and the plainly good ones must not be sent to the slow checks."""
    from lawfit import plan

    (task,) = lawfit.tasks_from_frame(_chinchilla_frame(), "chinchilla")
    rows = np.arange(task.target.shape[0])
    variants = [
        task,
        dataclasses.replace(task, target=np.where(rows == 3, np.nan, task.target)),
        dataclasses.replace(task, target=-task.target),
        dataclasses.replace(task, inputs=np.where(rows[:, None] == 2, 0.0, task.inputs)),
        dataclasses.replace(task, inputs=np.where(rows[:, None] == 1, -np.inf, task.inputs)),
        dataclasses.replace(task, objective=Objective("squared", space="raw"), target=-task.target),
        dataclasses.replace(task, inputs=task.inputs[:0], target=task.target[:0]),
        task,
    ]
    bulk = plan.plainly_valid(variants)
    law = lawfit.laws.get("chinchilla")
    alone = [bool(t.target.size) and plan._plainly_valid(law, t.objective, t.inputs, t.target) for t in variants]
    assert bulk.tolist() == alone == [True, False, False, False, False, True, False, True]
    # Not plainly shaped (a list, an unknown law): left to `prepare`'s own checks.
    assert not plan.plainly_valid([dataclasses.replace(task, inputs=task.inputs.tolist())]).any()
    assert not plan.plainly_valid([dataclasses.replace(task, law="chinchila")]).any()


def test_importing_lawfit_costs_jax_only_and_the_api_loads_on_use():
    """`import lawfit` imports jax and sets it up; Polars, Equinox and the API load on first use (the
    command line starts loading its programs meanwhile, `batch.warm`)."""
    code = (
        "import sys, lawfit; heavy = [m for m in ('polars', 'equinox', 'lawfit.api') if m in sys.modules]; "
        "assert lawfit.fit_many is lawfit.api.fit_many and lawfit.laws.get('chinchilla').name == 'chinchilla'; "
        "from lawfit import Status, datasets; assert 'fit' in dir(lawfit) and not hasattr(lawfit, 'nope'); "
        "import jax; print(heavy, jax.config.jax_enable_x64)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["[]", "True"]


def test_configuration_errors_name_the_problem():
    frame = _chinchilla_frame()
    with pytest.raises(ValueError, match="unknown law 'chinchila'"):
        lawfit.fit("chinchila", frame)
    with pytest.raises(ValueError, match=r"fixed: unknown parameter\(s\) \['gamma'\]"):
        lawfit.fit("chinchilla", frame, fixed={"gamma": 1.0})
    with pytest.raises(ValueError, match="missing column 'tokens'"):
        lawfit.fit("chinchilla", frame.drop("tokens"))
    with pytest.raises(ValueError, match=r"explicit starts must be \[restarts, 5\]"):
        lawfit.fit("chinchilla", frame, init=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown solver"):
        lawfit.fit("chinchilla", frame, solver="newton")
    with pytest.raises(ValueError, match="objective loss must be"):
        Objective(loss="cauchy")
    with pytest.raises(ValueError, match="no linear structure"):
        lawfit.fit("kaplan_nd", frame, init="varpro")


def test_fixed_parameters_and_random_starts():
    frame = _chinchilla_frame(noise=0.0)
    result = lawfit.fit(
        "chinchilla", frame, fixed={"alpha": TRUTH[3], "beta": TRUTH[4]}, init=16, objective="squared-log"
    )
    assert result.status == "converged"
    assert result.params["alpha"] == TRUTH[3]
    np.testing.assert_allclose(result.theta, TRUTH, rtol=1e-6)
    assert result.restarts.height == 16


def test_non_finite_start_is_reported_not_raised():
    frame = _chinchilla_frame()
    starts = np.array([[1e308, 1e308, 1e308, -1e308, -1e308]])
    result = lawfit.fit("chinchilla", frame, init=starts)
    assert result.status == "non-finite"
    assert result.objective is None


def test_bounds_are_respected_and_flagged():
    # m2 keeps eps_inf >= 0; data generated with a negative offset push it onto the bound.
    x = np.exp(np.linspace(3, 9, 25))
    y = 5.0 * x**-0.5 - 0.05
    frame = pl.DataFrame({"tokens": x, "value": y})
    result = lawfit.fit("m2", frame, objective="squared-raw")
    assert result.params["eps_inf"] >= 0.0
    assert result.status == "bound-hit"


def test_lbfgs_and_lm_agree():
    frame = _chinchilla_frame(seed=3)
    lm = lawfit.fit("chinchilla", frame, init="varpro", solver="lm")
    lbfgs = lawfit.fit("chinchilla", frame, init="varpro", solver="lbfgs")
    assert lbfgs.objective == pytest.approx(lm.objective, rel=1e-7)


def test_weights_and_mean_reduction():
    frame = _chinchilla_frame(seed=4).with_columns(pl.lit(2.0).alias("w"))
    plain = lawfit.fit("chinchilla", frame, init="varpro")
    weighted = lawfit.fit("chinchilla", frame, init="varpro", weights="w")
    mean = lawfit.fit("chinchilla", frame, init="varpro", objective=Objective(reduction="mean"))
    assert weighted.objective == pytest.approx(2 * plain.objective, rel=1e-8)
    assert mean.objective == pytest.approx(plain.objective / frame.height, rel=1e-6)


def test_task_objects_accept_numpy():
    rng = np.random.default_rng(5)
    x = np.exp(rng.uniform(40, 48, 20))
    y = 1.7 + np.exp(9.0) * x**-0.2
    task = Task(law="compute", inputs=x[:, None], target=y, objective=Objective("squared", space="raw"), init="varpro")
    out = lawfit.fit_many([task])
    assert out["status"][0] == "converged"
    assert out["alpha"][0] == pytest.approx(0.2, rel=1e-6)


def test_progress_bar_reports_rate_and_eta(capsys):
    rng = np.random.default_rng(11)
    tasks = []
    for _ in range(3):
        x = np.exp(rng.uniform(40, 48, 20))
        tasks.append(Task(law="compute", inputs=x[:, None], target=1.7 + np.exp(9.0) * x**-0.2, init="varpro",
                          objective=Objective("squared", space="log")))  # fmt: skip
    lawfit.fit_many(tasks, progress=True)  # stderr is not a terminal here: plain log lines
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("progress: ") for line in lines), lines
    assert "fits/s  ETA" in lines[0] and "3/3 fits in" in lines[-1] and "fits/s)" in lines[-1]
    lawfit.fit_many(tasks, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_on_a_terminal_is_one_redrawn_line():
    import io

    from lawfit.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = Progress(4, enabled=True, stream=stream)
    bar.update(1)
    bar.update(3)
    bar.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 3 and "[" + "#" * 30 + "] 4/4 fits" in text


def test_screen_runs_the_solver_from_the_best_grid_starts():
    """init="screen": the objective at all 4500 grid starts in one pass, the solver from the best 8; it
    reaches the full grid's optimum here, and those 8 are the grid starts with the lowest objective."""
    frame = _chinchilla_frame(noise=0.003, seed=4)
    (task,) = lawfit.tasks_from_frame(frame, "chinchilla", init="grid")
    screen = dataclasses.replace(task, init="screen")
    grid_row, screen_row = lawfit.fit_many([task, screen], keep_restarts=True).to_dicts()
    assert screen_row["n_restarts"] == 8 and grid_row["n_restarts"] == 4500
    assert screen_row["status"] == "converged"
    assert screen_row["objective"] <= grid_row["objective"] * (1 + 1e-9)
    # The screened starts are the 8 best: compare with the objective at every start, from numpy.
    law = lawfit.laws.get("chinchilla")
    starts = law.grid_starts()
    log_pred = np.log(np.asarray([law.predict_raw(s, np.c_[frame["params"], frame["tokens"]]) for s in starts]))
    r = np.log(frame["value"].to_numpy())[None, :] - log_pred
    huber = np.where(np.abs(r) <= 1e-3, 0.5 * r**2, 1e-3 * (np.abs(r) - 0.5e-3)).sum(axis=1)
    three = lawfit.fit_many([screen], screen_starts=3, keep_restarts=True).row(0, named=True)
    assert three["n_restarts"] == 3
    # LM never accepts a worse point: each restart ends no worse than the third-best grid start.
    assert max(three["restart_objective"]) <= np.sort(huber)[2] * (1 + 1e-9)
    with pytest.raises(ValueError, match="screen_starts must be >= 1"):
        lawfit.fit_many([screen], screen_starts=0)

"""Formula laws: parsing and its errors, fits against closed forms and the registry laws, covariates
through `lawfit fit`, multi-output fits, and a ScaleBench task end to end on a small slice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import lawfit
from lawfit import kernels
from lawfit.kernels import FormulaError, from_formula
from lawfit.kernels import scalebench as sb_laws
from lawfit.kernels.formula import OUTPUT, parse, parse_bounds, parse_starts, separate

SHARED = Path(__file__).resolve().parents[2] / "shared"
BOX = {"E": (0, 10), "A": (0, 1e4), "alpha": (0, 2), "B": (0, 1e5), "beta": (0, 2)}


@pytest.mark.parametrize(
    ("formula", "kwargs", "message"),
    [
        ("E + A*N**-alph", {"inputs": ("N",), "params": ("E", "A")}, "unknown symbol(s) ['alph']"),
        ("E + A*N**", {"inputs": ("N",)}, "syntax error at the end"),
        # Columns count in the formula as written, where each '^' is one character, not Python's '**'.
        ("E^2 + A*N^-alpha +* B", {"inputs": ("N",)}, "syntax error at column 19"),
        ("", {"inputs": ("N",)}, "empty"),
        ("E + A*foo(N)", {"inputs": ("N",)}, "unknown function 'foo'"),
        ("E + A*log(N, 2)", {"inputs": ("N",)}, "log() takes 1 argument(s), got 2"),
        ("E + A*N.real", {"inputs": ("N",)}, "Attribute is not allowed"),
        ("E + A*N[0]", {"inputs": ("N",)}, "Subscript is not allowed"),
        ("E + (N > 1)", {"inputs": ("N",)}, "comparisons are not allowed"),
        ("E + 'x'", {"inputs": ()}, "only numbers may appear as constants"),
        (
            "E + A*N**-alpha",
            {"inputs": ("N",), "bounds": {"E": (0, 1), "A": (0, 1), "alpha": (0, 1), "c": (0, 1)}},
            "parameter 'c' is never used",
        ),
        ("E + A*N**-alpha", {"inputs": ("N", "D")}, "input(s) ['D'] are never used"),
        (
            "E + A*N**-alpha",
            {"inputs": ("N",), "bounds": {"A": (0, 1), "alpha": (0, 1)}},
            "parameter 'E' needs finite bounds or start values",
        ),
        ("E + A*N**-alpha", {"inputs": ("N",), "bounds": {"E": (1, 0)}}, "bounds of 'E' must have low < high"),
        ("E + A*N**-alpha", {"inputs": ("N",), "params": ("E", "A", "alpha", "N")}, "'N' is both an input"),
        ("lambda: 1", {"inputs": ()}, "Lambda is not allowed"),
        ("E + exp*N", {"inputs": ("N",)}, "'exp' is a function"),
        (
            "E + A*N**-alpha",
            {"inputs": ("N",), "starts": {"E": (20,)}, "bounds": {"E": (0, 10)}},
            "starts of 'E' must be finite values within its bounds",
        ),
    ],
)
def test_bad_formulas_say_what_is_wrong(formula, kwargs, message):
    with pytest.raises(FormulaError) as err:
        from_formula(formula, **kwargs)
    assert message in str(err.value)
    assert str(err.value).startswith("formula ")


def test_parse_finds_names_and_positive_inputs():
    parsed = parse("E + A*N^-alpha + B*log(D) + c*max(x, 1e-12)**-g + k*(M/1e9)**0.5 + w*Z**2")
    assert parsed.names[:3] == ("E", "A", "N")
    assert {"N", "D", "M"} <= parsed.positive  # bare inputs under a fractional power or a log
    assert "x" not in parsed.positive and "Z" not in parsed.positive  # guarded by max, integer power
    assert parse_bounds("A=0:1e4,E=:5") == {"A": (0.0, 1e4), "E": (None, 5.0)}
    assert parse_starts("alpha=0.2|0.4") == {"alpha": (0.2, 0.4)}
    with pytest.raises(FormulaError, match="--bounds: expected name=low:high"):
        parse_bounds("A=0")


def test_formula_predicts_like_numpy_and_fits_a_closed_form():
    law = from_formula("E + A*N**-alpha + B*D**-beta", inputs=("N", "D"), bounds=BOX)
    rng = np.random.default_rng(0)
    n, d = np.exp(rng.uniform(17, 23, 60)), np.exp(rng.uniform(20, 27, 60))
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
    y = truth["E"] + truth["A"] * n ** -truth["alpha"] + truth["B"] * d ** -truth["beta"]
    theta = np.array([truth[p] for p in law.param_names])
    np.testing.assert_allclose(law.predict_raw(theta, np.column_stack([n, d])), y, rtol=1e-13)
    fit = lawfit.fit(law, {"N": n, "D": d, "value": y}, objective="squared-raw")
    assert fit.status == "converged"
    for name, value in truth.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-6)


def test_screen_on_a_random_start_law_runs_from_the_best_of_each_block_of_draws():
    """init="screen" on a law whose default starts are random draws: the objective at
    SCREEN_DRAWS x random_starts uniform candidates, the solver from one candidate per block of
    consecutive draws (`screen_starts` blocks), exactly each block's best by a numpy evaluation."""
    from lawfit import plan

    law = from_formula(
        "E + A*N**-alpha", inputs=("N",), bounds={"E": (0, 5), "A": (0, 50), "alpha": (0, 2)}, random_starts=4
    )
    n = np.geomspace(1e2, 1e6, 12)
    y = 1.5 + 30.0 * n**-0.4
    objective = lawfit.Objective(loss="squared", space="raw", reduction="sum")
    task = lawfit.Task(law, n[:, None], y, objective=objective, init="screen", seed=3)
    kind, candidates = plan.resolve_starts(law, "screen", (0, 1, 2), 3)
    assert kind == "draws" and candidates.shape == (plan.SCREEN_DRAWS * 4, 3)
    assert (candidates >= np.array(law.lower)).all() and (candidates <= np.array(law.upper)).all()
    f = np.array([np.sum((np.asarray(law.predict_raw(c, n[:, None])) - y) ** 2) for c in candidates])
    per = -(-len(candidates) // 3)  # 64 draws in blocks of 22, 22 and 20
    best = np.stack([candidates[first + np.argmin(f[first : first + per])] for first in (0, per, 2 * per)])
    screened, explicit = lawfit.fit_many(
        [task, lawfit.Task(law, n[:, None], y, objective=objective, init=best)], screen_starts=3, keep_restarts=True
    ).to_dicts()
    assert screened["n_restarts"] == 3
    assert screened["restart_objective"] == explicit["restart_objective"]
    assert screened["objective"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("registry", ["chinchilla", "kaplan_nd"])
def test_formula_matches_the_registry_law_on_bundled_data(registry):
    """The same law written as a formula in the same parametrisation, started from the same grid
    points, reaches the registry law's objective to 1e-8 on Epoch's Chinchilla points."""
    law = kernels.get(registry)
    text = {
        "chinchilla": "exp(a - alpha*log(N)) + exp(b - beta*log(D)) + exp(e)",
        "kaplan_nd": "((exp(log_nc)/N)**(alpha_n/alpha_d) + exp(log_dc)/D)**alpha_d",
    }[registry]
    mine = from_formula(
        text,
        inputs=("N", "D"),
        params=law.param_names,
        bounds={p: (lo, hi) for p, lo, hi in zip(law.param_names, law.lower, law.upper, strict=True)},
        starts=dict(law.init_grid),
    )
    frame = lawfit.datasets.load("epoch-chinchilla")
    x = frame.select("params", "tokens").to_numpy()
    y = frame["value"].to_numpy()
    starts = law.grid_starts()[:: max(len(law.grid_starts()) // 48, 1)]  # the same ~48 grid starts for both
    tasks = [lawfit.Task(law=which, inputs=x, target=y, init=starts) for which in (law, mine)]
    rows = lawfit.fit_many(tasks)
    reference, formula = rows["objective"].to_list()
    assert formula == pytest.approx(reference, rel=1e-8)
    assert rows["status"][1] in ("converged", "ill-conditioned", "non-unique")


def test_multi_output_fit_shares_one_parameter_vector():
    law = from_formula(
        {"a": "c + k*x", "b": "c2 + k*x**2"}, inputs=("x",), bounds={"c": (-5, 5), "k": (-5, 5), "c2": (-5, 5)}
    )
    assert law.outputs == ("a", "b") and law.inputs == ("x", OUTPUT)
    rng = np.random.default_rng(3)
    x = np.linspace(0.1, 1, 30)
    frame = pl.DataFrame(
        {"x": x, "a": 1 + 2 * x + rng.normal(0, 1e-3, 30), "b": -1 + 2 * x**2 + rng.normal(0, 1e-3, 30)}
    )
    fit = lawfit.fit(law, frame, objective="squared-raw")
    assert fit.params["k"] == pytest.approx(2.0, abs=2e-3)
    assert fit.params["c"] == pytest.approx(1.0, abs=2e-3) and fit.params["c2"] == pytest.approx(-1.0, abs=2e-3)
    # Joint least squares: the shared slope fits both outputs (closed form of the stacked system).
    design = np.zeros((60, 3))
    design[:30, 0], design[:30, 1] = 1, x
    design[30:, 2], design[30:, 1] = 1, x**2
    exact, *_ = np.linalg.lstsq(design, np.concatenate([frame["a"], frame["b"]]), rcond=None)
    np.testing.assert_allclose([fit.params[p] for p in ("c", "k", "c2")], exact, rtol=1e-7, atol=1e-9)


def test_outputs_sharing_no_parameter_separate_into_one_law_each():
    law = from_formula(
        {"a": "ca + ka*x**ea", "b": "cb + kb*y**eb"},
        inputs=("x", "y"),
        bounds={p: (-3, 3) for p in ("ca", "ka", "ea", "cb", "kb", "eb")},
    )
    parts = separate(law)
    assert [p.output for p in parts] == [0, 1]
    # Both outputs are written alike: one law (one set of programs) over positional names.
    assert parts[0].law is parts[1].law and parts[0].law.param_names == ("q0", "q1", "q2")
    assert [law.param_names[i] for i in parts[1].params] == ["cb", "kb", "eb"] and parts[1].inputs == (1,)
    rng = np.random.default_rng(0)
    theta = rng.uniform(0.5, 2.0, 6)
    xy = rng.uniform(0.5, 2.0, (20, 2))
    for part in parts:
        points = np.c_[xy, np.full(20, part.output)]
        whole = np.asarray(law.predict_raw(theta, points))
        own = np.asarray(part.law.predict_raw(theta[list(part.params)], xy[:, list(part.inputs)]))
        np.testing.assert_allclose(own, whole, rtol=1e-15)
    shared = from_formula(
        {"a": "c + k*x", "b": "c2 + k*x**2"}, inputs=("x",), bounds={p: (-5, 5) for p in "c k c2".split()}
    )
    assert separate(shared) is None and separate(kernels.get("chinchilla")) is None


def _run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lawfit.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_fit_cli_takes_a_formula_over_any_covariate(tmp_path):
    rng = np.random.default_rng(1)
    experts = rng.choice([1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 48)
    dense = np.exp(rng.uniform(np.log(1e7), np.log(1e9), 48))
    loss = 1.5 + 300 * dense**-0.3 * experts**-0.1
    pl.DataFrame({"num_experts": experts, "dense": dense, "loss": loss}).write_csv(tmp_path / "moe.csv")
    done = _run_cli(
        "fit", "moe.csv", "--formula", "L + A*N^-alpha*experts^-beta",
        "--map", "experts=num_experts,N=dense,value=loss",
        "--bounds", "L=0:5,A=0:1e4,alpha=0:1,beta=0:1", "--objective", "squared-raw", "--no-plot", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["results"]
    assert row["status"] == "converged"
    assert row["alpha"] == pytest.approx(0.3, rel=1e-5) and row["beta"] == pytest.approx(0.1, rel=1e-5)
    # A later process predicts from the saved results (the law is rebuilt from lawfit-out/laws.json).
    done = _run_cli("predict", "lawfit-out", "--at", "N=1e10,experts=64", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (prediction,) = json.loads(done.stdout)
    expected = row["L"] + row["A"] * 1e10 ** -row["alpha"] * 64.0 ** -row["beta"]
    assert prediction["prediction"] == pytest.approx(expected, rel=1e-12)
    # A name in the formula that is neither a column nor bounded is refused with one line.
    bad = _run_cli("fit", "moe.csv", "--formula", "L + A*N^-alpha*expert^-beta", "--map", "N=dense,value=loss",
                   "--bounds", "L=0:5,A=0:1e4,alpha=0:1,beta=0:1", "--no-plot", cwd=tmp_path)  # fmt: skip
    assert bad.returncode != 0
    assert "bounds/starts for ['beta'], which are not in params" in bad.stderr or "'expert'" in bad.stderr


def test_law_file_with_a_multi_output_law(tmp_path):
    (tmp_path / "laws.toml").write_text(
        '[[law]]\nname = "shared_slope"\noutputs = {a = "c + k*x", b = "c2 + k*x**2"}\ninputs = ["x"]\n'
        "bounds = {c = [-5, 5], k = [-5, 5], c2 = [-5, 5]}\n"
    )
    x = np.linspace(0.1, 1, 20)
    pl.DataFrame({"x": x, "a": 1 + 2 * x, "b": -1 + 2 * x**2 + 1e-3 * np.sin(9 * x)}).write_csv(tmp_path / "w.csv")
    done = _run_cli("fit", "w.csv", "--law-file", "laws.toml", "--objective", "squared-raw", "--no-plot", "--json",
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["results"]
    assert row["law"] == "shared_slope" and row["k"] == pytest.approx(2.0, abs=1e-3)
    assert row["sse_a"] >= 0 and row["sse_b"] > row["sse_a"]  # per-output residuals
    broken = tmp_path / "broken.toml"
    broken.write_text('[[law]]\nformula = "c + k*x"\n')
    done = _run_cli("fit", "w.csv", "--law-file", "broken.toml", cwd=tmp_path)
    assert done.returncode != 0 and "'inputs' (the data columns the formula reads) is required" in done.stderr


def test_scalebench_laws_are_all_built_with_the_benchmark_parameter_counts():
    counts = {len(spec.laws) for spec in sb_laws.TASKS.values()}
    assert counts == {10} and len(sb_laws.TASKS) == 6
    law = sb_laws.law("domain_mixture_scaling_law", "sl_4")
    assert law.n_params == 35 and law.outputs == tuple(f"loss_domain_{i}" for i in range(1, 6))
    assert sb_laws.law("lr_bsz_scaling_law", "sl_7").n_params == 31


@pytest.mark.skipif(not (SHARED / "data" / "scalebench").exists(), reason="../shared/data/scalebench absent")
def test_bundled_scalebench_files_are_the_released_ones():
    for task in sb_laws.TASKS:
        for split in ("train", "test"):
            ours = lawfit.datasets.scalebench(task, split)
            theirs = pl.read_parquet(SHARED / "data" / "scalebench" / task / f"{split}.parquet")
            assert ours.equals(theirs)


def test_scalebench_task_end_to_end_on_a_small_slice():
    """Two parallel-scaling laws fitted per group (the full suite: `bench/scalebench.py`), scored on the
    test split: R^2 near 1 as published (0.99 for the task), and the scipy L-BFGS-B procedure from
    uniform starts reaches no lower objective."""
    from scipy.optimize import minimize

    from lawfit import scalebench

    task = "parallel_scaling_law"
    out = scalebench.run([task], law_ids=["sl_2", "sl_9"], restarts=16)
    assert out["n_laws"] == 2 and out["n_fits"] == 4  # two laws x two groups (pile, stack)
    r2 = {e["law_id"]: e["r2"] for e in out["laws"]}
    assert min(r2.values()) > 0.99
    law = sb_laws.law(task, "sl_2")
    groups = scalebench.groups(sb_laws.PARALLEL)
    total = 0.0
    for group in groups:
        x, y = group.x_train, group.y_train[:, 0]

        def sse(theta, x=x, y=y):
            return float(np.sum((np.asarray(law.predict_raw(theta, x)) - y) ** 2))

        rng = np.random.default_rng(0)
        low, high = np.array(law.lower), np.array(law.upper)
        best = min(
            minimize(
                sse, low + (high - low) * rng.random(5), method="L-BFGS-B", bounds=list(zip(low, high, strict=True))
            ).fun
            for _ in range(8)
        )
        total += best
    ours = next(e for e in out["laws"] if e["law_id"] == "sl_2")["objective"]
    assert ours <= total * (1 + 1e-6)
    assert scalebench.r_squared(np.ones(3), np.ones(3)) == 1.0 and scalebench.r_squared(np.ones(3), np.zeros(3)) == -1.0


def test_many_parameter_law_matches_least_squares():
    """A 12-parameter law (linear regression on 11 covariates) goes through the stacked evaluation
    and factorisation used above `UNROLL_MAX` free parameters; LM must land on numpy's lstsq."""
    from lawfit.solvers.linalg import UNROLL_MAX

    n_inputs = 11
    assert n_inputs + 1 > UNROLL_MAX
    rng = np.random.default_rng(5)
    x = rng.normal(size=(80, n_inputs))
    y = 0.5 + x @ rng.normal(size=n_inputs) + rng.normal(0, 0.01, 80)
    names = [f"x{k}" for k in range(n_inputs)]
    text = "w + " + " + ".join(f"b{k}*x{k}" for k in range(n_inputs))
    law = from_formula(text, inputs=names, bounds={p: (-10, 10) for p in ["w", *(f"b{k}" for k in range(n_inputs))]})
    frame = pl.DataFrame({**{name: x[:, k] for k, name in enumerate(names)}, "value": y})
    fit = lawfit.fit(law, frame, objective="squared-raw")
    exact, *_ = np.linalg.lstsq(np.column_stack([np.ones(80), x]), y, rcond=None)
    np.testing.assert_allclose(fit.theta, exact, rtol=1e-8, atol=1e-10)
    assert fit.objective == pytest.approx(np.sum((np.column_stack([np.ones(80), x]) @ exact - y) ** 2), rel=1e-10)


def test_linear_coefficients_are_found_and_give_variable_projection_starts():
    from lawfit.kernels.formula import linear_parameters

    assert list(linear_parameters("E + A*N**-alpha + B*D**-beta", ["E", "A", "alpha", "B", "beta"])) == ["E", "A", "B"]
    assert list(linear_parameters("E - A*x/(1 + k*x)", ["E", "A", "k"])) == ["E", "A"]
    assert linear_parameters("1 + A*x", ["A"]) == {}  # a free offset: no linear structure
    assert linear_parameters("(A*N**-alpha + E)*S**-beta", ["A", "alpha", "E", "beta"]) == {}
    law = from_formula("E + A*N**-alpha + B*D**-beta", inputs=("N", "D"), bounds=BOX)
    assert law.varpro is not None and law.varpro.nonlinear == ("alpha", "beta") and law.varpro.nonneg
    rng = np.random.default_rng(0)
    n, d = np.exp(rng.uniform(17, 23, 60)), np.exp(rng.uniform(20, 27, 60))
    y = (1.7 + 400 * n**-0.34 + 410 * d**-0.28) * np.exp(rng.normal(0, 0.01, 60))
    data = {"N": n, "D": d, "value": y}
    scanned, drawn = lawfit.fit(law, data, init="varpro"), lawfit.fit(law, data, init=64)
    assert scanned.status == "converged" and scanned.objective == pytest.approx(drawn.objective, rel=1e-9)
    assert scanned.restarts.height == 8  # the scan's best points, not 64 draws


DEADLOCK_SCRIPT = """
import json, numpy as np, polars as pl, lawfit
from lawfit.kernels import from_formula
names = [f"x{k}" for k in range(11)]
law = from_formula("w + " + " + ".join(f"b{k}*x{k}" for k in range(11)), inputs=names,
                   bounds={p: (-10, 10) for p in ["w", *(f"b{k}" for k in range(11))]})
rng = np.random.default_rng(5)
frames, exact = [], []
for g in range(48):
    x = rng.normal(size=(60, 11))
    y = 0.5 + x @ rng.normal(size=11) + rng.normal(0, 0.01, 60)
    design = np.column_stack([np.ones(60), x])
    exact.append(float(np.sum((design @ np.linalg.lstsq(design, y, rcond=None)[0] - y) ** 2)))
    frames.append(pl.DataFrame({**{n: x[:, k] for k, n in enumerate(names)}, "value": y, "g": [g] * 60}))
tasks = lawfit.tasks_from_frame(pl.concat(frames), law, group_by=["g"], objective="squared-raw", init=64)
rows = lawfit.fit_many(tasks, progress=False)
print(json.dumps({"devices": len(__import__("jax").devices()), "status": rows["status"].to_list(),
                  "objective": rows["objective"].to_list(), "exact": exact}))
"""


def test_many_parameter_pool_on_two_devices_finishes():
    """Regression: a > UNROLL_MAX-parameter law's pool split over two CPU devices deadlocked (each
    device's execution waited inside LAPACK's batched Cholesky for the thread pool the other held)."""
    env = {**os.environ, "LAWFIT_CPU_DEVICES": "2"}
    done = subprocess.run([sys.executable, "-c", DEADLOCK_SCRIPT], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert set(out["status"]) == {"converged"}
    np.testing.assert_allclose(out["objective"], out["exact"], rtol=1e-8)

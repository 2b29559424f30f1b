"""`lawfit fit` / `lawfit predict` on a user's file: end to end, and a table of bad inputs with the exact
outcome of each (a one-line error, or a per-group status while the good groups are still fitted)."""

import json
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import lawfit
from lawfit import cli

TRUTH = {"g1": (6.0, 7.0, 0.5, 0.34, 0.28), "g2": (5.5, 6.5, 0.6, 0.30, 0.33)}
SIZES = [5e7, 1e8, 2e8, 4e8, 8e8, 1.6e9, 3.2e9]
TOKENS = [1e9, 3e9, 1e10, 3e10, 1e11]


def _loss(n, d, a, b, e, alpha, beta):
    return np.exp(e) + np.exp(a) * n**-alpha + np.exp(b) * d**-beta


def _runs(seed=0, noise=0.002) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"group": g, "N": n, "D": d, "loss": _loss(n, d, *theta) * np.exp(rng.normal(0, noise))}
        for g, theta in TRUTH.items()
        for n in SIZES
        for d in TOKENS
    ]
    return pl.DataFrame(rows)


def _fit_process(path, out, *extra) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of `lawfit fit` on `path` in a fresh process, as a user runs it."""
    argv = [sys.executable, "-m", "lawfit.cli", "fit", str(path), "--law", "chinchilla", "--map", GOOD_MAP,
            "--group-by", "group", "--out", str(out), *extra]  # fmt: skip
    return argv, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run_cli(args, capsys):
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow  # the fast suite runs the README's fit block (tests/test_readme.py), which checks the same
def test_fit_end_to_end_recovers_parameters(tmp_path):
    path = tmp_path / "runs.csv"
    _runs().write_csv(path)
    out = tmp_path / "out"
    argv, env = _fit_process(path, out, "--bootstrap", "20", "--holdout", "params>2e9", "--json")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {row["group"]: row for row in json.loads(proc.stdout)["results"]}
    assert set(results) == set(TRUTH)
    for group, (_, _, e, alpha, beta) in TRUTH.items():
        row = results[group]
        assert row["status"] == "converged"
        assert row["alpha"] == pytest.approx(alpha, abs=0.03) and row["beta"] == pytest.approx(beta, abs=0.03)
        assert row["E"] == pytest.approx(np.exp(e), rel=0.05)
        assert row["n_holdout"] == len(TOKENS) and row["holdout_are_percent"] < 1.0
        assert row["bootstrap_ok"] >= 18 and row["alpha_lo"] < row["alpha"] < row["alpha_hi"]
    assert (out / "results.parquet").exists() and (out / "points.parquet").exists()
    assert sorted(p.name for p in out.glob("*.png")) == ["fit_group_g1.png", "fit_group_g2.png"]
    saved = pl.read_parquet(out / "results.parquet")
    assert saved.height == 2 and saved["status"].to_list() == ["converged", "converged"]
    # Predictions from the saved results, and the compute-optimal split of a budget.
    proc = subprocess.run(
        [sys.executable, "-m", "lawfit.cli", "predict", str(out), "--params", "7e10", "--tokens", "1.4e12", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for row in json.loads(proc.stdout):
        expected = _loss(7e10, 1.4e12, *TRUTH[row["group"]])
        assert row["prediction"] == pytest.approx(expected, rel=0.02)


def test_fit_from_python_table():
    from lawfit.fitjob import fit_table

    table = fit_table(
        _runs().to_pandas() if _has_pandas() else _runs().to_arrow(),
        "chinchilla",
        columns={"params": "N", "tokens": "D", "value": "loss"},
        group_by=("group",),
    )
    assert table["status"].to_list() == ["converged", "converged"]
    assert table["alpha"].to_list() == pytest.approx([0.34, 0.30], abs=0.03)
    # The flat API takes the table too: every law on every group, in one call.
    rows = lawfit.fit_many(
        _runs().to_arrow(), law=["chinchilla", "kaplan_nd"], columns={"params": "N", "tokens": "D", "value": "loss"},
        group_by=["group"],
    )  # fmt: skip
    assert rows.select("group", "law").rows() == [("g1", "chinchilla"), ("g2", "chinchilla"), ("g1", "kaplan_nd"),
                                                  ("g2", "kaplan_nd")]  # fmt: skip
    assert rows.filter(pl.col("law") == "chinchilla")["alpha"].to_list() == table["alpha"].to_list()


def _has_pandas():
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


GOOD_MAP = "params=N,tokens=D,value=loss"

# (name, file maker, extra args, expected message). Each must exit 2 with exactly one line on stderr.
CLI_ERRORS = [
    ("missing file", None, [], "no such file"),
    ("corrupt parquet", "corrupt.parquet", [], "cannot read"),
    ("unsupported type", "runs.xlsx", [], "unsupported file type '.xlsx'"),
    ("unknown --map column", "runs.csv", ["--map", "params=X,tokens=D,value=loss"], "--map params=X: no such column"),
    ("unknown --map name", "runs.csv", ["--map", "param=N,tokens=D,value=loss"], "unknown name 'param'; known: family"),
    (
        "--map renames a schema column away",
        "runs_family.csv",
        ["--map", "params=N,tokens=D,value=loss,lr=family", "--group-by", "family"],
        "--map lr=family: renames the file's 'family' column to 'lr', leaving no 'family' column",
    ),
    ("malformed --map", "runs.csv", ["--map", "params"], "--map: expected name=column pairs"),
    ("unknown law", "runs.csv", ["--law", "nope"], "unknown law 'nope'"),
    (
        "bad --restarts",
        "runs.csv",
        ["--restarts", "many"],
        "--restarts: expected 'varpro', 'grid', 'screen' or a number",
    ),
    ("zero --restarts", "runs.csv", ["--restarts", "0"], "--restarts: need at least 1 start"),
    ("bad --holdout", "runs.csv", ["--holdout", "params~1e9"], "--holdout: expected COLUMN OP NUMBER"),
    ("unknown --group-by", "runs.csv", ["--group-by", "nosuch"], "--group-by: no column 'nosuch'"),
    ("bad --objective", "runs.csv", ["--objective", "cubic"], "objective"),
    ("negative --delta", "runs.csv", ["--delta", "-1"], "--delta: expected a positive number"),
    ("negative --bootstrap", "runs.csv", ["--bootstrap", "-3"], "--bootstrap: expected a number of resamples"),
    ("column the law needs", "no_tokens.csv", ["--map", "params=N,value=loss"], "missing column(s) ['tokens']"),
    ("no rows", "header_only.csv", [], "nothing to fit: the table has no rows"),
    ("every row bad", "all_nan.csv", [], "nothing to fit: every row was dropped"),
]


def _make(tmp_path, kind):
    if kind is None:
        return tmp_path / "absent.csv"
    path = tmp_path / kind
    if kind == "corrupt.parquet":
        path.write_bytes(b"PAR1 this is not parquet")
    elif kind == "runs.xlsx":
        path.write_text("not a spreadsheet")
    elif kind == "no_tokens.csv":
        _runs().drop("D").write_csv(path)
    elif kind == "all_nan.csv":
        _runs().with_columns(pl.lit(float("nan")).alias("loss")).write_csv(path)
    elif kind == "runs_family.csv":
        _runs().rename({"group": "family"}).write_csv(path)
    elif kind == "header_only.csv":
        path.write_text("group,N,D,loss\n")
    else:
        _runs().write_csv(path)
    return path


@pytest.mark.parametrize(("name", "kind", "extra", "message"), CLI_ERRORS, ids=[c[0] for c in CLI_ERRORS])
def test_cli_error_table(tmp_path, capsys, name, kind, extra, message):
    path = _make(tmp_path, kind)
    args = ["fit", path, "--law", "chinchilla", "--map", GOOD_MAP, "--group-by", "group", "--out", tmp_path / "o"]
    for flag in ("--law", "--map", "--group-by"):  # later flags override the defaults above
        if flag in extra:
            index = args.index(flag)
            del args[index : index + 2]
    code, out, err = _run_cli(args + extra, capsys)
    assert code == 2, (out, err)
    assert message in err and err.count("\n") == 1 and err.startswith("lawfit: error: ")


def test_predict_errors(tmp_path, capsys):
    other = tmp_path / "other.parquet"
    pl.DataFrame({"x": [1.0]}).write_parquet(other)
    code, _, err = _run_cli(["predict", other, "--params", "1e9"], capsys)
    assert code == 2 and "is not a lawfit results file" in err
    code, _, err = _run_cli(["predict", tmp_path / "missing.parquet", "--params", "1e9"], capsys)
    assert code == 2 and "no such results file" in err


def test_predict_refuses_non_positive_inputs():
    results = pl.DataFrame({"law": ["chinchilla"], "status": ["converged"], "theta": [[6.0, 7.0, 0.5, 0.34, 0.28]]})
    for values, budget, flag in [({"params": -7e10, "tokens": 1e12}, None, "--params"),
                                 ({"params": 7e10, "tokens": 0.0}, None, "--tokens"),
                                 ({}, float("nan"), "--budget")]:  # fmt: skip
        with pytest.raises(ValueError, match=f"predict {flag}: expected a positive finite number"):
            lawfit.fitjob.predict(results, values, flops_budget=budget)


def test_cli_error_has_no_traceback_and_debug_shows_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base = [sys.executable, "-m", "lawfit.cli"]
    args = ["fit", str(tmp_path / "absent.csv"), "--law", "chinchilla"]
    proc = subprocess.run(base + args, capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    proc = subprocess.run(base + ["--debug"] + args, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_the_command_collects_again_once_its_modules_are_in():
    """`entry` turns the cyclic collector off for the imports (`cli._collect_from_here`); the job itself
    must run with it on (a long job's cyclic garbage is collected), and the imports' objects frozen."""
    code = (
        "import gc, lawfit.api as api\n"
        "seen = []\n"
        "fit_many = api.fit_many\n"
        "def spy(*a, **k):\n"
        "    seen.append((gc.isenabled(), gc.get_freeze_count() > 100000))\n"
        "    return fit_many(*a, **k)\n"
        "api.fit_many = spy\n"
        "import atexit; atexit.register(lambda: print('SEEN', seen))\n"
        "from lawfit.cli import entry; entry()\n"
    )
    args = ["reproduce", "chinchilla", "--init", "varpro", "--json"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "SEEN [(True, True)]"


def _first(n, column, value):
    return pl.when(pl.int_range(pl.len()) < n).then(value).otherwise(column).alias(column)


def test_degenerate_groups_get_statuses_and_good_groups_are_fitted(tmp_path, capsys):
    """One file, many bad groups: each gets its documented outcome, the good ones are fitted."""
    rng = np.random.default_rng(3)
    good = _runs().filter(pl.col("group") == "g1")

    def group(name, frame):
        return frame.with_columns(pl.lit(name).alias("group"))

    theta = TRUTH["g1"]
    parts = [
        good,
        group("tiny", good.head(3)),  # 3 points for 5 parameters
        group("one_size", good.filter(pl.col("N") == 4e8)),  # N never varies: its exponent is free
        group("constant", good.with_columns(pl.lit(2.5).alias("loss"))),  # nothing to explain
        group("nan_rows", good.with_columns(_first(3, "loss", float("nan")))),
        group("negative_size", good.with_columns(_first(1, "N", -1.0))),
        group("dups", pl.concat([good, good.head(4)])),
        group("negative_loss", good.with_columns(_first(2, "loss", -1.0))),  # dropped rows, not the group
        group("huge_loss", good.with_columns(_first(1, "loss", 1e308))),  # beyond the plausible range: dropped
        group("tiny_losses", good.with_columns(pl.col("loss") * 1e-4)),  # losses near 0: log residuals are scale-free
        group("extreme", pl.DataFrame([
            {"N": n, "D": d, "loss": _loss(n, d, *theta) * np.exp(rng.normal(0, 0.002))}
            for n in [1e10, 3e10, 1e11, 3e11, 1e12, 1e13] for d in [1e13, 3e13, 1e14, 3e14, 1e15]
        ])),
    ]  # fmt: skip
    frame = pl.concat(parts, how="diagonal_relaxed").select("group", "N", "D", "loss")
    text = frame.with_columns(pl.col("loss").cast(pl.String))
    first_dup = (pl.col("group") == "dups") & (pl.int_range(pl.len()).over("group") == 0)
    text = text.with_columns(pl.when(first_dup).then(pl.lit("oops")).otherwise("loss").alias("loss"))  # not a number
    path = tmp_path / "mixed.csv"
    text.write_csv(path)
    code, out, err = _run_cli(
        ["fit", path, "--law", "chinchilla", "--map", GOOD_MAP, "--group-by", "group", "--out", tmp_path / "o",
         "--no-plot", "--json"], capsys,
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(out)
    rows = {row["group"]: row for row in payload["results"]}
    notes = payload["notes"]
    assert rows["g1"]["status"] == "converged" and rows["g1"]["alpha"] == pytest.approx(0.34, abs=0.03)
    assert rows["tiny"]["status"] == "too-few-points"
    assert rows["tiny"]["message"] == "too few points: 3 point(s) for 5 free parameter(s) of law 'chinchilla'"
    assert rows["one_size"]["status"] == "ill-conditioned"  # the N term and E cannot be told apart
    # A single size: the N term, E and alpha cannot be told apart, and the message names all three.
    assert rows["one_size"]["message"].startswith("not determined by the data: A, E, alpha ("), rows["one_size"]
    assert (
        rows["constant"]["status"] == "ill-conditioned" and "not determined by the data" in rows["constant"]["message"]
    )
    for name in ("nan_rows", "negative_size", "dups", "extreme", "tiny_losses", "negative_loss", "huge_loss"):
        assert rows[name]["status"] == "converged", (name, rows[name])
    assert rows["nan_rows"]["n_points"] == good.height - 3
    assert rows["negative_size"]["n_points"] == good.height - 1
    assert rows["negative_loss"]["n_points"] == good.height - 2
    assert rows["huge_loss"]["n_points"] == good.height - 1
    assert rows["huge_loss"]["alpha"] == pytest.approx(rows["g1"]["alpha"], rel=0.02)
    # 4 rows repeated: 3 exact duplicates dropped; the first differs ("oops" in the original), which is dropped.
    assert rows["dups"]["n_points"] == good.height
    assert rows["extreme"]["alpha"] == pytest.approx(0.34, abs=0.03)
    assert rows["tiny_losses"]["alpha"] == pytest.approx(rows["g1"]["alpha"], rel=1e-6)
    assert "3 exact duplicate row(s) dropped" in notes
    assert any("column 'value': non-finite value (NaN or inf) (3 rows)" in n for n in notes)
    assert any("column 'params': must be > 0" in n for n in notes)
    negative = "column 'value': must be > 0 (a log-space objective takes its log), got -1.0 (2 rows)"
    assert any(negative in n for n in notes)
    assert any("column 'value': implausibly large (|x| > 1e+12), got 1e+308 (1 row)" in n for n in notes)
    assert any("column 'value': expected numbers, got values like 'oops'" in n for n in notes)
    saved = pl.read_parquet(tmp_path / "o" / "results.parquet")
    assert saved.height == len(parts)


def test_ctrl_c_ends_with_one_line_and_exit_130(tmp_path):
    import signal
    import time

    path = tmp_path / "runs.csv"
    _runs().write_csv(path)
    out = tmp_path / "o"
    argv, env = _fit_process(path, out, "--bootstrap", "400", "--no-plot")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (out / "parts").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # interrupt once the job is under way (its output folder exists)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "lawfit: interrupted; rerun the same command to resume"
    )


def test_pooled_families_are_non_unique_not_converged():
    """Two families pooled into one fit (no --group-by): restarts reach the same objective at
    different exponents; the row says so instead of reporting one of them as converged."""
    from lawfit.fitjob import fit_table

    for restarts in ("varpro", "screen"):  # the scan's starts, and the best 8 of the 4500-point grid
        row = fit_table(
            _runs(), "chinchilla", columns={"params": "N", "tokens": "D", "value": "loss"}, group_by=(),
            restarts=restarts,
        ).row(0, named=True)  # fmt: skip
        assert row["status"] == "non-unique", (restarts, row["status"], row["message"])
        assert row["message"].startswith("non-unique optimum: ") and "alpha " in row["message"]


def test_fit_text_output_is_natural_parameters_with_the_formula(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    _runs().write_csv(path)
    code, out, err = _run_cli(
        ["fit", path, "--law", "chinchilla", "--map", GOOD_MAP, "--group-by", "group", "--out", tmp_path / "o"], capsys
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "chinchilla: L = E + A/N^alpha + B/D^beta  (A=e^a, B=e^b, E=e^e)"
    assert lines[1].startswith("  [group=g1] chinchilla: converged; A=") and " E=" in lines[1] and " e=" not in lines[1]
    assert lines[-1].endswith("and 2 plot(s)")


def test_a_failing_plot_costs_only_the_plots(tmp_path, capsys, monkeypatch):
    import lawfit.plots

    def broken(*args, **kwargs):
        raise RuntimeError("plots need matplotlib: pip install 'lawfit[plot]'")

    monkeypatch.setattr(lawfit.plots, "fit_plots", broken)
    path = tmp_path / "runs.csv"
    _runs().write_csv(path)
    code, out, err = _run_cli(
        ["fit", path, "--law", "chinchilla", "--map", GOOD_MAP, "--group-by", "group", "--out", tmp_path / "o"], capsys
    )
    assert code == 0, err
    assert "[group=g2] chinchilla: converged" in out
    assert "note: plots skipped: plots need matplotlib: pip install 'lawfit[plot]'" in out
    assert out.splitlines()[-1].endswith("and 0 plot(s)")


def test_fit_plots_have_unique_names_user_labels_and_survive_text_cells(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    frame = _runs().with_columns(pl.col("group").replace({"g1": "a b", "g2": "a,b"}), pl.col("loss").cast(pl.String))
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("n/a")).otherwise("loss").alias("loss"))
    path = tmp_path / "runs.csv"
    frame.write_csv(path)
    out = tmp_path / "o"
    code, text, err = _run_cli(
        ["fit", path, "--law", "chinchilla,kaplan_nd", "--map", GOOD_MAP, "--group-by", "group", "--out", out,
         "--holdout", "params>2e9"], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "column 'value': expected numbers, got values like 'n/a'" in text
    names = sorted(p.name for p in out.glob("fit_*.png"))
    assert len(names) == 2 and len(set(names)) == 2 and "fit_group_a_b.png" in names, names
    assert text.splitlines()[-1].endswith("and 2 plot(s)")
    for png in out.glob("fit_*.png"):
        png.unlink()
    assert _run_cli(["plot", out, "--out", tmp_path / "new" / "dir"], capsys)[0] == 0
    assert len(list((tmp_path / "new" / "dir").glob("fit_*.png"))) == 2

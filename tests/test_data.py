"""The data layer: readers with a column mapping, validation messages, bundled datasets, CLI."""

import subprocess
import sys

import numpy as np
import polars as pl
import pytest

import lawfit
from lawfit.data import ValidationError, conform, find_issues, read_observations, validate


def _runs(n=6):
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "N": rng.uniform(1e7, 1e9, n),
            "D": rng.uniform(1e9, 1e11, n),
            "loss": rng.uniform(2, 4, n),
            "lr": rng.uniform(1e-4, 1e-3, n),
        }
    )


def test_csv_to_parquet_round_trip(tmp_path):
    runs = _runs()
    runs.write_csv(tmp_path / "runs.csv")
    frame = read_observations(tmp_path / "runs.csv", "params=N,tokens=D,value=loss")
    frame, report = validate(frame)
    assert report.dropped == 0 and report.issues == ()
    conform(frame).write_parquet(tmp_path / "runs.parquet")
    back = pl.read_parquet(tmp_path / "runs.parquet")
    np.testing.assert_array_equal(back["params"].to_numpy(), runs["N"].to_numpy())
    np.testing.assert_array_equal(back["tokens"].to_numpy(), runs["D"].to_numpy())
    np.testing.assert_array_equal(back["value"].to_numpy(), runs["loss"].to_numpy())
    np.testing.assert_array_equal(back["lr"].to_numpy(), runs["lr"].to_numpy())
    assert back["family"].to_list() == ["default"] * 6 and back["metric"].to_list() == ["loss"] * 6
    assert back.columns[:9] == list(lawfit.data.OBSERVATION_SCHEMA)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 4).then(float("nan")).otherwise("value").alias("value")
            ),
            r"column 'value': non-finite value \(NaN or inf\) \(1 row\) at rows \[4\]",
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) >= 3).then(-1.0).otherwise("params").alias("params")
            ),
            r"column 'params': must be > 0 .* \(3 rows\) at rows \[3, 4, 5\]",
        ),
        (lambda f: f.drop("tokens"), r"column 'tokens': missing required column"),
        (
            lambda f: f.with_columns(pl.col("value").cast(pl.String).replace({f["value"].cast(pl.String)[1]: "abc"})),
            r"column 'value': expected numbers, got values like 'abc' \(1 row\) at rows \[1\]",
        ),
        (lambda f: pl.concat([f, f.head(2)]), r"duplicate key .* \(4 rows\) at rows \[0, 1, 6, 7\]"),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 0).then(float("inf")).otherwise("tokens").alias("tokens")
            ),
            r"column 'tokens': non-finite .* at rows \[0\]",
        ),
    ],
)
def test_each_validation_failure_names_column_and_rows(mutate, expected):
    frame = mutate(read_observations_frame())
    with pytest.raises(ValidationError, match=expected):
        validate(frame)


def read_observations_frame():
    return lawfit.data.to_observations(_runs(), {"params": "N", "tokens": "D", "value": "loss"})


def test_drop_counts_rows():
    frame = read_observations_frame().with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise("value").alias("value")
    )
    out, report = validate(frame, on_invalid="drop")
    assert out.height == 5 and report.dropped == 1
    assert "non-finite" in str(report.issues[0])
    with pytest.raises(ValueError, match="on_invalid must be"):
        validate(frame, on_invalid="ignore")


def test_all_problems_listed_at_once():
    frame = (
        read_observations_frame()
        .drop("tokens")
        .with_columns(
            pl.when(pl.int_range(pl.len()) == 1).then(-5.0).otherwise("params").alias("params"),
            pl.when(pl.int_range(pl.len()) == 2).then(float("nan")).otherwise("value").alias("value"),
        )
    )
    issues, bad = find_issues(frame)
    assert [i.column for i in issues] == ["tokens", "params", "value"]
    assert bad.to_list() == [False, True, True, False, False, False]


BUNDLED_COUNTS = {
    # name: (rows, families, distinct runs)
    "epoch-chinchilla": (245, 1, 245),
    "overtraining": (1040, 3, 104),
    "datablations": (296, 1, 296),
    "revisiting": (19595, 92, 92),
    "hitchhiker": (74957, 50, 535),
}

# Models per family of the rebuilt Hitchhiker collection (scaled families; ":unscaled" groups models outside one).
HITCHHIKER_FAMILY_MODELS = {
    **{f"GPT2-{corpus}-{epochs}": 3 for corpus in ("c4", "oscar") for epochs in (1, 2, 3, 4, 5, 7, 14, 44)},
    **{f"{corpus}{mix}": 1 for corpus in ("Pile", "SlimPajama") for mix in ("", "_CE_mix", "_DoReMi_mix",
                                                                           "_JE_mix", "_SE_mix", "_VNE_mix")},
    "GPT2:unscaled": 247, "Lamma:unscaled": 2, "OPT": 6, "bloom": 5, "chinchilla": 43, "gpt3": 8, "lambda": 5,
    "lambda:unscaled": 5, "llm360Mamba": 1, "olmo": 2, "olmo:unscaled": 1, "opt": 8, "overtrain-C4": 6,
    "overtrain-RedPajama": 6, "overtrain-RefinedWeb": 6, "overtrain:unscaled": 86, "pythia": 8, "pythia-deduped": 8,
    "pythia-deduped-v0": 8, "pythia-v0": 8, "redPajama": 2, "t5-pile": 4,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BUNDLED_COUNTS))
def test_bundled_counts_are_pinned(name):
    table = lawfit.datasets.list().filter(pl.col("name") == name).row(0, named=True)
    assert (table["rows"], table["families"], table["models"]) == BUNDLED_COUNTS[name]
    frame = lawfit.datasets.load(name)
    assert frame.columns[:9] == list(lawfit.data.OBSERVATION_SCHEMA)


def test_hitchhiker_family_counts_are_pinned():
    table = lawfit.datasets.list().filter(pl.col("name") == "hitchhiker").row(0, named=True)
    counts = {item["family"]: item["models"] for item in table["family_models"]}
    assert counts == HITCHHIKER_FAMILY_MODELS
    frame = lawfit.datasets.load("hitchhiker")
    scaled = frame.filter(pl.col("scaled_set").is_not_null())
    assert scaled["scaled_set"].n_unique() == 45 and frame["run_id"].n_unique() >= 150
    assert (frame["metric"] == "perf").all() and frame["value"].is_finite().all()
    assert (frame["tokens"] > 0).all() and (frame.drop_nulls("params")["params"] > 0).all()
    # Pythia: 8 sizes from 70m to 12b, 143,000 steps of 2,097,152 tokens at the end.
    pythia = frame.filter(pl.col("family") == "pythia")
    assert sorted(pythia["params"].unique().to_list()) == [7e7, 1.6e8, 4.1e8, 1e9, 1.4e9, 2.8e9, 6.9e9, 1.2e10]
    assert pythia["tokens"].max() == 143_000 * 2_097_152


def test_datablations_fit_subset_and_overtraining_metrics():
    data = lawfit.datasets.load("datablations")
    assert data["fit_subset"].sum() == 182
    over = lawfit.datasets.load("overtraining")
    assert {"c4_val", "err_avg_17_subset"} <= set(over["metric"].unique().to_list())


def test_cli_check_lists_mapping_and_row_problems_together(tmp_path):
    """A NaN loss, a negative N and a mapped column the file lacks: all three listed, exit 1."""
    path = tmp_path / "three.csv"
    path.write_text("N,D,loss\n1e8,1e9,3.1\n2e8,1e9,nan\n-3e8,1e9,2.9\n")
    mapping = "params=N,tokens=D,value=loss,unique_tokens=U"
    proc = subprocess.run(
        [sys.executable, "-m", "lawfit.cli", "data", "check", str(path), "--map", mapping],
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and lines[0].endswith("3 problem(s) in 3 rows"), proc.stdout
    assert "column 'U': --map unique_tokens=U: no such column" in lines[1]
    assert "column 'params': must be > 0" in proc.stdout and "rows [2]" in proc.stdout
    assert "column 'value': non-finite value (NaN or inf) (1 row) at rows [1]" in proc.stdout


def test_cli_check_lists_every_problem(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("N,loss\n1e8,3.1\n2e8,nan\n-3e8,2.9\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lawfit.cli", "data", "check", str(path), "--map", "params=N,value=loss"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "column 'tokens': missing required column" in proc.stdout
    assert "column 'params': must be > 0" in proc.stdout and "rows [2]" in proc.stdout
    assert "column 'value': non-finite" in proc.stdout and "rows [1]" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "check", "/nonexistent.csv"], "no such file"),
        (["data", "check", "{bad_parquet}"], "cannot read"),
        (["data", "check", "{good}", "--map", "params"], "--map: expected name=column pairs"),
        (["data", "show", "nope"], "unknown dataset 'nope'"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_text("not parquet")
    good = tmp_path / "good.csv"
    _runs().write_csv(good)
    args = [a.format(bad_parquet=bad_parquet, good=good) for a in args]
    from lawfit import cli  # in-process; tests/test_fit_cli.py checks a real process shows no traceback

    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("lawfit: error: ")


def test_flops_fall_back_to_six_nd_only_where_missing():
    from lawfit.data.schema import with_flops
    from lawfit.kernels.base import size_for_budget, training_flops

    frame = pl.DataFrame({"params": [1e8, 2e9], "tokens": [2e9, 4e10]})
    added = with_flops(frame)
    assert added["flops"].to_list() == [1.2e18, 4.8e20]
    measured = added.with_columns(pl.Series("flops", [5e18, None]))
    assert with_flops(measured)["flops"].to_list() == [5e18, 4.8e20]  # a measured value is kept
    assert with_flops(frame.drop("tokens")).columns == ["params"]  # nothing to compute from
    assert with_flops(frame, "C")["C"].to_list() == [1.2e18, 4.8e20]
    np.testing.assert_allclose(size_for_budget(training_flops(3e9, 6e10), 3e9), 6e10, rtol=1e-15)

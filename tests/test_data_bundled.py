"""Bundled data load from the installed package, without ../shared."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lawfit

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_epoch_chinchilla_bundled():
    frame = lawfit.datasets.load("epoch-chinchilla")
    assert frame.height == 245
    assert frame["tokens"].min() > 2e8 and frame["params"].max() < 2e10
    table = lawfit.datasets.list()
    assert "epoch-chinchilla" in table["name"].to_list()
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        lawfit.datasets.load("nope")


def test_porian_isoflop_points_lie_on_their_budgets():
    import polars as pl

    from lawfit.data import bundled

    frame = lawfit.datasets.load("porian-isoflop")
    published = bundled.porian_published()
    assert frame.height == 1745 and set(frame["family"]) == set(published)
    budgets = frame.group_by("family").agg(pl.col("flops").n_unique().alias("n"))
    assert dict(budgets.iter_rows()) == {family: p["budgets"] for family, p in published.items()}
    # Budgets double from 1.25e16; outside the attention-FLOPs settings C = 6 N D exactly.
    assert np.allclose(np.log2(frame["flops"].unique().to_numpy() / 1.25e16) % 1, 0)
    six_nd = frame.filter(pl.col("param_count") != "attention")
    np.testing.assert_allclose(6 * six_nd["params"] * six_nd["tokens"], six_nd["flops"], rtol=1e-6)
    assert all(p["a_low"] < p["a"] < p["a_high"] for p in published.values())


@pytest.mark.skipif(not SHARED.exists(), reason="../shared is not present")
def test_bundled_matches_shared_release():
    import polars as pl

    raw = pl.read_csv(SHARED / "epoch_chinchilla" / "svg_extracted_data.csv")
    frame = lawfit.datasets.load("epoch-chinchilla")
    assert frame["value"].to_list() == raw["loss"].to_list()
    assert frame["params"].to_list() == raw["Model Size"].to_list()


def test_loads_from_another_directory(tmp_path):
    code = "import lawfit; print(*(lawfit.datasets.load(n).height for n in ('epoch-chinchilla', 'hitchhiker')))"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["245", "74957"]


@pytest.mark.skipif(not (SHARED / "hitchhiker").exists(), reason="../shared is not present")
def test_hitchhiker_rebuilds_from_the_shared_release():
    """Every non-Pythia row of the bundled collection comes back from the raw files by the conversion script."""
    import polars as pl

    from lawfit.data import build_hitchhiker

    frames = [source(SHARED / "hitchhiker") for source in build_hitchhiker.SOURCES]
    rebuilt = pl.concat(frames, how="diagonal_relaxed")
    bundled = lawfit.datasets.load("hitchhiker").filter(~pl.col("source").str.starts_with("pythia evals"))
    assert rebuilt.height == bundled.height
    key = ["run_id", "tokens", "value"]
    mine, theirs = (frame.select(key).sort(key) for frame in (rebuilt, bundled))
    assert mine.equals(theirs)
    # Spot checks against the raw files: OPT-175b's final perplexity, Pile-T5 xxl as log2 perplexity.
    opt = bundled.filter(pl.col("run_id") == "OPT-175b").sort("tokens")
    assert opt["value"][-1] == pytest.approx(9.768875, abs=1e-6)
    t5 = pl.read_csv(
        SHARED / "hitchhiker" / "aggregated_eval" / "t5_pile.csv", columns=["model_name", "steps", "val_perplexity"]
    )
    last = t5.filter(pl.col("model_name") == "xxl").sort("steps")[-1]
    row = bundled.filter((pl.col("run_id") == "pile-t5-xxl") & (pl.col("step") == last["steps"][0]))
    assert row["value"][0] == pytest.approx(np.log2(last["val_perplexity"][0]), rel=1e-12)


@pytest.mark.skipif(not (SHARED / "hitchhiker").exists(), reason="../shared is not present")
def test_hitchhiker_rows_do_not_depend_on_polars_threads(tmp_path):
    """Means over a row's loss columns add in one order: `pl.mean_horizontal`'s order followed Polars'
    thread count, and with one thread 127 rows of the rebuild differed in their last bits."""
    script = (
        "import sys, polars as pl\n"
        "from pathlib import Path\n"
        "from lawfit.data import build_hitchhiker as b\n"
        "frames = [source(Path(sys.argv[1])) for source in b.SOURCES]\n"
        "pl.concat(frames, how='diagonal_relaxed').write_ipc(sys.argv[2])\n"
    )
    import polars as pl

    frames = []
    for threads in ("1", "2"):
        out = tmp_path / f"threads-{threads}.arrow"
        env = {**os.environ, "POLARS_MAX_THREADS": threads}
        subprocess.run([sys.executable, "-c", script, str(SHARED / "hitchhiker"), str(out)], check=True, env=env)
        frames.append(pl.read_ipc(out))
    assert frames[0].equals(frames[1])

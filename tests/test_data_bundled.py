"""Bundled data load from the installed package, without ../shared."""

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.skipif(not SHARED.exists(), reason="../shared is not present")
def test_bundled_matches_shared_release():
    import polars as pl

    raw = pl.read_csv(SHARED / "epoch_chinchilla" / "svg_extracted_data.csv")
    frame = lawfit.datasets.load("epoch-chinchilla")
    assert frame["value"].to_list() == raw["loss"].to_list()
    assert frame["params"].to_list() == raw["Model Size"].to_list()


def test_loads_from_another_directory(tmp_path):
    code = "import lawfit; print(lawfit.datasets.load('epoch-chinchilla').height)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "245"

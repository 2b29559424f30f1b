"""The rent-or-buy rule for compiling smaller batch shapes (`engine/compiles.py`)."""

import time

import numpy as np
import pytest

import lawfit
from lawfit.compiles import DEFAULT_COMPILE_SECONDS, MEASURE_WEIGHT, Ledger


def test_a_new_shape_is_bought_once_the_declined_savings_cover_its_compile():
    ledger = Ledger()
    cost = DEFAULT_COMPILE_SECONDS["advance"] + DEFAULT_COMPILE_SECONDS["gather"]
    needed = {"big": "advance", "move": "gather"}
    # Saving 10 ms a step, 8 steps left in this batch: 0.08 s, far from the compile.
    declined = 0
    while not ledger.worth("group", needed, saved_per_step=0.01, steps_left=8, steps_next=8):
        declined += 1
        assert declined < 100
    # Each decline paid 0.08 s of rent; it is bought when rent + 0.08 s covers the compiles.
    assert declined == int(np.ceil((cost - 0.08) / 0.08 - 1e-9))
    assert ledger.rent["group"] == 0.0  # spent
    # Another group has paid nothing yet.
    assert not ledger.worth("other", needed, saved_per_step=0.01, steps_left=8, steps_next=8)


def test_compiled_shapes_are_free_and_a_saving_of_nothing_buys_nothing():
    ledger = Ledger()
    ledger.compiled |= {"big", "move"}
    assert ledger.worth("group", {"big": "advance", "move": "gather"}, saved_per_step=0.0, steps_left=0, steps_next=8)
    assert not ledger.worth("group", {"new": "advance"}, saved_per_step=0.0, steps_left=1000, steps_next=8)
    assert ledger.rent["group"] == 0.0
    # A big enough saving in this batch alone buys at once.
    assert ledger.worth("group", {"new": "advance"}, saved_per_step=1.0, steps_left=8, steps_next=8)


def test_timed_measures_compiles_of_new_shapes_only():
    ledger = Ledger()
    _, elapsed = ledger.timed("advance", "shape", time.sleep, 0.05)
    assert elapsed >= 0.05 and ledger.known("shape")
    measured = ledger.seconds["advance"]
    expected = DEFAULT_COMPILE_SECONDS["advance"] + MEASURE_WEIGHT * (elapsed - DEFAULT_COMPILE_SECONDS["advance"])
    assert measured == pytest.approx(expected)
    ledger.timed("advance", "shape", time.sleep, 0.05)  # known: a run, not a compile
    assert ledger.seconds["advance"] == measured
    ledger.clear()
    assert not ledger.known("shape") and ledger.seconds == DEFAULT_COMPILE_SECONDS


def test_jobs_give_the_same_fits_with_and_without_compile_aware_compaction(monkeypatch):
    """Whether a compaction is bought changes which lanes share a batch, not what they compute."""
    from lawfit import api

    monkeypatch.setattr(api, "COMPACT_MIN_WORK", 0)
    rng = np.random.default_rng(3)
    tasks = []
    for k in range(10):
        x = np.exp(rng.uniform(40, 48, 12 + 5 * k))
        y = 1.7 + np.exp(9.0 + 0.3 * k) * x ** -(0.2 + 0.02 * k) * np.exp(rng.normal(0, 0.01, x.size))
        tasks.append(lawfit.Task(law="compute", inputs=x[:, None], target=y, init=16, seed=k))
    aware = lawfit.fit_many(tasks, stage_steps=2, keep_restarts=True)
    eager = lawfit.fit_many(tasks, stage_steps=2, keep_restarts=True, compact="always")
    assert aware["restart_status"].to_list() == eager["restart_status"].to_list()
    np.testing.assert_allclose(
        np.asarray(aware["restart_objective"].to_list(), dtype=float),
        np.asarray(eager["restart_objective"].to_list(), dtype=float),
        rtol=1e-9,
    )


def test_an_unknown_compaction_mode_is_refused():
    task = lawfit.Task(law="compute", inputs=np.geomspace(1e18, 1e22, 8)[:, None], target=np.linspace(3, 2, 8))
    with pytest.raises(ValueError, match="compact must be one of"):
        lawfit.fit_many([task], compact="sometimes")

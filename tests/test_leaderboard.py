"""Hold-out protocol (which rows train and which are scored, on a small fixture), the leaderboard's
ranking, its CLI (resume included) and `lawfit plot`."""

import json

import numpy as np
import polars as pl
import pytest

from lawfit import cli, kernels, leaderboard
from lawfit.holdout import Holdout, are_percent

SIZES = [1e7, 2e7, 4e7, 8e7, 1.6e8]
TRUTH = np.array([6.0, 7.0, 0.4, 0.32, 0.3])  # chinchilla: log A, log B, log E, alpha, beta


def _family(name="fam", n_checkpoints=10, noise=0.0, seed=0, truth=TRUTH, tokens_per_param=20) -> pl.DataFrame:
    """Models of SIZES, each with checkpoints at 10%, 20%, ..., 100% of its tokens_per_param x size."""
    rng = np.random.default_rng(seed)
    law = kernels.get("chinchilla")
    rows = []
    for size in SIZES:
        tokens = tokens_per_param * size * np.arange(1, n_checkpoints + 1) / n_checkpoints
        loss = np.asarray(law.predict_raw(truth, np.c_[np.full_like(tokens, size), tokens]))
        loss = loss * np.exp(rng.normal(0, noise, tokens.size))
        for t, value in zip(tokens, loss, strict=True):
            rows.append({"family": name, "run_id": f"{name}-{size:g}", "params": size, "tokens": t, "value": value})
    return pl.DataFrame(rows)


def test_expanding_windows_train_below_the_cut_and_score_the_end_of_larger_models():
    windows = list(Holdout(warmup_fraction=0.15, eval_fraction=0.3, max_points_per_model=5).windows(_family()))
    assert [w.k for w in windows] == [2, 3, 4]
    for window in windows:
        cut = SIZES[window.k - 1]
        assert window.cut == cut
        assert window.train["params"].max() == cut and window.test["params"].min() > cut
        assert sorted(window.train["params"].unique().to_list()) == SIZES[: window.k]
        assert sorted(window.test["params"].unique().to_list()) == SIZES[window.k :]
        # warm-up: checkpoints at 10% of training dropped; thinned to 5 per model, the final one kept
        per_model = window.train.group_by("run_id").agg(
            pl.len(), (pl.col("tokens") / (20 * pl.col("params"))).min().alias("first"), pl.col("tokens").max()
        )
        assert (per_model["len"] == 5).all()
        assert per_model["first"].to_numpy() == pytest.approx(np.full(window.k, 0.2))
        fractions = window.test["tokens"] / (20 * window.test["params"])
        assert sorted(set(np.round(fractions.to_numpy(), 6))) == [0.7, 0.8, 0.9, 1.0]  # last 30 %
    assert [w.k for w in Holdout(max_windows=1).windows(_family())] == [4]
    assert [w.k for w in Holdout(min_train=3).windows(_family())] == [3, 4]


def test_compute_axis_cuts_on_final_compute():
    family = _family().with_columns((6 * pl.col("params") * pl.col("tokens")).alias("flops"))
    windows = list(Holdout(axis="flops").windows(family))
    final = 6 * np.array(SIZES) * 20 * np.array(SIZES)
    assert [w.cut for w in windows] == pytest.approx(final[1:4].tolist())


def test_holdout_rejects_bad_settings():
    with pytest.raises(ValueError, match="axis must be 'params' or 'flops'"):
        Holdout(axis="tokens")
    with pytest.raises(ValueError, match="min_train must be >= 1"):
        Holdout(min_train=0)


def test_are_percent():
    assert are_percent(np.array([2.0, 4.0]), np.array([2.2, 3.6])) == pytest.approx(10.0)
    assert np.isnan(are_percent(np.array([2.0]), np.array([np.nan])))


def _two_families():
    other = TRUTH + np.array([0.3, -0.2, 0.1, 0.04, -0.03])
    parts = []
    for name, truth, seed in (("a", TRUTH, 1), ("b", other, 2)):
        for per_param in (10, 80):
            part = _family(name, noise=0.002, seed=seed + per_param, truth=truth, tokens_per_param=per_param)
            parts.append(part.with_columns(pl.col("run_id") + f"-{per_param}x"))
    return pl.concat(parts)


def test_leaderboard_plan_and_ranking_on_data_from_the_chinchilla_law():
    spec = leaderboard.Leaderboard(laws=("chinchilla", "compute", "kaplan_nd"), holdout=Holdout(max_points_per_model=6))
    tasks, meta = leaderboard.plan(_two_families(), spec)
    assert len(tasks) == 2 * 3 * 3  # families x windows x laws
    assert [(m["family"], m["k"], m["law"]) for m in meta[:4]] == [
        ("a", 2, "chinchilla"), ("a", 2, "compute"), ("a", 2, "kaplan_nd"), ("a", 3, "chinchilla"),
    ]  # fmt: skip
    assert tasks[0].inputs.shape == (2 * 2 * 6, 2) and tasks[1].inputs.shape == (2 * 2 * 6, 1)  # compute: flops
    from lawfit import fit_many

    cells = leaderboard.score(fit_many(tasks).to_dicts(), meta, spec)
    per_family, overall = leaderboard.rank(cells)
    assert overall["law"][0] == "chinchilla" and overall["mean_rank"][0] == 1.0
    best = cells.filter(pl.col("law") == "chinchilla")
    # The true law extrapolates within ~the noise once three sizes pin its five parameters.
    assert (best.filter(pl.col("k") >= 3)["are_percent"] < 1.0).all() and (best["are_percent"] < 3.0).all()
    assert set(per_family.filter(pl.col("rank") == 1)["law"]) == {"chinchilla"}


def test_failures_rank_last():
    cells = pl.DataFrame(
        {
            "family": ["f"] * 6,
            "k": [2, 2, 3, 3, 4, 4],
            "law": ["x", "y"] * 3,
            "are_percent": [1.0, 50.0, None, 40.0, None, 45.0],  # x is better when it works, but fails twice
            "status": ["converged", "converged", "too-few-points", "converged", "non-finite", "converged"],
        }
    )
    per_family, overall = leaderboard.rank(cells)
    assert overall["law"].to_list() == ["y", "x"]
    x = per_family.filter(pl.col("law") == "x").row(0, named=True)
    assert (x["failed"], x["mean_are_percent"], x["median_are_percent"]) == (2, 1.0, float("inf"))


def test_mostly_unconverged_laws_are_listed_unranked_and_the_markdown_explains_its_marks():
    cells = pl.DataFrame(
        {
            "family": ["f"] * 6 + ["g"] * 2,
            "k": [2, 2, 3, 3, 4, 4, 2, 2],
            "law": ["x", "y"] * 4,
            "are_percent": [1.0, 50.0, 2.0, 1.3e41, 3.0, 1.4e41, 5.0, None],
            "status": ["max-iter", "converged", "max-iter", "converged", "converged", "converged", "max-iter",
                       "non-finite"],
        }
    )  # fmt: skip
    per_family, overall = leaderboard.rank(cells)
    assert overall.select("law", "ranked").rows() == [("y", True), ("x", False)]  # x: 3 of 4 reached no optimum
    text = leaderboard.markdown(per_family, overall, leaderboard.Leaderboard(), "t")
    assert "| 1 | y |" in text and "| unranked | x |" in text
    assert "1.3e+41" in text and "130000" not in text and "Key:" in text and "**n/a**" in text and "**—**" in text


def test_leaderboard_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown law"):
        leaderboard.plan(_family(), leaderboard.Leaderboard(laws=("nope",)))
    with pytest.raises(ValueError, match=r"law\(s\) \['m2'\] apply to no family"):
        leaderboard.plan(_family(), leaderboard.Leaderboard(laws=("m2",)))
    with pytest.raises(ValueError, match=r"unknown family \['zzz'\]"):
        leaderboard.plan(_family(), leaderboard.Leaderboard(families=("zzz",)))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['run_id'\]"):
        leaderboard.plan(_family().drop("run_id"), leaderboard.Leaderboard())


def test_leaderboard_cli_writes_ranks_resumes_and_replots(tmp_path, capsys):
    data = tmp_path / "runs.csv"
    _two_families().write_csv(data)
    out = tmp_path / "board"
    args = ["leaderboard", "--file", str(data), "--laws", "chinchilla,compute", "--chunk", "4", "--out", str(out)]
    assert cli.main(args + ["--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["tasks"] == 12 and first["solved"] == 12 and first["laws"][0] == "chinchilla"
    assert (out / "leaderboard.png").stat().st_size > 0
    text = (out / "leaderboard.md").read_text()
    assert "| 1 | chinchilla |" in text and "| a | **" in text
    results = pl.read_parquet(out / "results.parquet")
    assert results.height == 12 and results["task_hash"].n_unique() == 12

    (out / "parts" / "part-000001.parquet").unlink()  # as if killed before its second chunk landed
    assert cli.main(args + ["--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["solved"], again["resumed"]) == (4, 8)
    assert pl.read_parquet(out / "results.parquet").equals(results)

    (out / "leaderboard.png").unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "leaderboard.png")
    assert (out / "leaderboard.png").stat().st_size > 0


def test_ill_conditioned_fits_reached_an_optimum_and_stay_ranked():
    cells = pl.DataFrame(
        {"family": ["f"] * 4, "k": [2, 2, 3, 3], "law": ["x", "y"] * 2, "are_percent": [1.0, 2.0, 1.5, 2.5],
         "status": ["ill-conditioned", "max-iter", "non-unique", "bound-hit"]}
    )  # fmt: skip
    _, overall = leaderboard.rank(cells)
    ranks = overall.select("law", "ranked", "not_converged", "no_optimum").rows()
    assert ranks == [("x", True, 2, 0), ("y", False, 2, 2)]

"""The README's commands run as shown: every `lawfit` command in its shell blocks parses, and the
"Fit your own runs" block runs, in order, in a fresh folder (all blocks in order: marked slow)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lawfit.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str = "bash") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _commands(block: str) -> list[str]:
    """The block's lines with continuations joined, comments dropped; heredoc bodies skipped."""
    lines, heredoc = [], None
    for line in block.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        match = re.search(r"<<'?(\w+)'?", line)
        if match:
            heredoc = match.group(1)
        lines.append(line.split("  #")[0].strip())
    return [line for line in lines if line]


def _run(block: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `lawfit` and `python` of this venv
    return subprocess.run(["bash", "-e", "-c", block], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def test_every_lawfit_command_shown_parses():
    parser = build_parser()
    checked = 0
    for block in _blocks():
        for command in _commands(block):
            for part in command.split("&&"):
                words = shlex.split(part)
                if not words or words[0] != "lawfit" or any(w.startswith(("[", "|")) or w == "|" for w in words):
                    continue  # not a lawfit command, or a synopsis line with [options]
                parser.parse_args(words[1:])  # exits (SystemExit) on a flag or value the CLI does not take
                checked += 1
    assert checked >= 7, checked  # reproduce, fit, 2 x predict, 2 x leaderboard, plot


def _setup_free(block: str) -> str:
    # The set-up commands make the venv this suite already runs in; the rest of each line is kept.
    return re.sub(r"python3 -m venv \.venv && \. \.venv/bin/activate && pip install [^&]+&& ", "", block)


def test_fit_your_own_runs_block_runs_in_order(tmp_path):
    block = next(b for b in _blocks() if "my_runs.csv" in b)
    proc = _run(block, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[family=small-lr] chinchilla: converged; A=" in proc.stdout
    assert "wrote my_fit/results.parquet, my_fit/points.parquet and 2 plot(s)" in proc.stdout
    assert "params_opt" in proc.stdout  # the --budget prediction's table
    # The block's data come from known parameters (A = e^6, E = e^0.5, alpha 0.34, beta 0.28 for small-lr).
    rows = pl.read_parquet(tmp_path / "my_fit" / "results.parquet").filter(pl.col("law") == "chinchilla")
    truth = {"small-lr": (6.0, 0.5, 0.34, 0.28), "big-lr": (5.5, 0.6, 0.30, 0.33)}
    for row in rows.to_dicts():
        a, e, alpha, beta = truth[row["family"]]
        assert row["status"] == "converged" and row["n_holdout"] == 5 and row["holdout_are_percent"] < 1.0
        assert row["alpha"] == pytest.approx(alpha, abs=0.03) and row["beta"] == pytest.approx(beta, abs=0.03)
        assert row["E"] == pytest.approx(np.exp(e), rel=0.05) and row["alpha_lo"] < row["alpha"] < row["alpha_hi"]
    assert sorted(p.name for p in (tmp_path / "my_fit").glob("*.png")) == [
        "fit_family_big-lr.png",
        "fit_family_small-lr.png",
    ]


@pytest.mark.slow
def test_every_block_runs_in_order(tmp_path):
    """Each shell block (less the set-up and test commands), then each Python block, in one folder."""
    for block in _blocks():
        if "pytest" in block:
            continue  # the test command itself
        proc = _run(_setup_free(block), tmp_path)
        assert proc.returncode == 0, (block, proc.stderr[-3000:])
    for block in _blocks("python"):
        proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, (block, proc.stderr[-3000:])

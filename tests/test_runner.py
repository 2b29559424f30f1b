"""The streaming runner: one Parquet file per chunk, resume by task hash, nothing lost when a job is
killed with SIGKILL, and a 2-process `jax.distributed` job giving the same rows as one process."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from lawfit import fit_many, runner, synthetic

N_TASKS = 24
CHUNK = 8


def _tasks(n=N_TASKS):
    return synthetic.chinchilla_tasks(n, seed=3, n_points=12, init=3)


def test_rows_in_task_order_and_rerun_skips_everything(tmp_path):
    summary = runner.run(_tasks(), tmp_path, chunk_tasks=CHUNK)  # a generator: no len()
    assert (summary.n_tasks, summary.n_solved, summary.n_skipped, summary.n_chunks_written) == (24, 24, 0, 3)
    assert sorted(p.name for p in tmp_path.glob("part-*.parquet")) == [f"part-00000{i}.parquet" for i in range(3)]
    rows = runner.read(tmp_path)
    assert rows["task_index"].to_list() == list(range(N_TASKS))
    assert rows["index"].to_list() == list(range(N_TASKS))  # the synthetic task's own label
    assert rows["task_hash"].n_unique() == N_TASKS
    # A chunk's rows are exactly what fit_many gives on that chunk.
    direct = fit_many(list(_tasks())[CHUNK : 2 * CHUNK])
    assert rows.slice(CHUNK, CHUNK).drop("task_index", "chunk", "process").equals(direct)
    again = runner.run(_tasks(), tmp_path, chunk_tasks=CHUNK)
    assert (again.n_solved, again.n_skipped, again.n_chunks_written) == (0, N_TASKS, 0)


def test_lost_chunk_is_resolved_bit_identically(tmp_path):
    runner.run(list(_tasks()), tmp_path, chunk_tasks=CHUNK)
    before = runner.read(tmp_path)
    (tmp_path / "part-000001.parquet").unlink()
    (tmp_path / "part-000002.parquet.p0.tmp").write_bytes(b"half-written")  # what a kill can leave
    # Another process's unfinished file: it may still be writing it, so this process leaves it be.
    (tmp_path / "part-000003.parquet.p1.tmp").write_bytes(b"being written")
    summary = runner.run(list(_tasks()), tmp_path, chunk_tasks=CHUNK)
    assert (summary.n_solved, summary.n_skipped) == (CHUNK, N_TASKS - CHUNK)
    assert [path.name for path in tmp_path.glob("*.tmp")] == ["part-000003.parquet.p1.tmp"]
    assert runner.read(tmp_path).equals(before)


def test_resuming_with_other_options_is_refused(tmp_path):
    runner.run(_tasks(4), tmp_path, chunk_tasks=2)
    with pytest.raises(ValueError, match=r"different job \(chunk_tasks: 2 there, 3 now\)"):
        runner.run(_tasks(4), tmp_path, chunk_tasks=3)
    with pytest.raises(ValueError, match=r"solver: None there, 'lbfgs' now"):
        runner.run(_tasks(4), tmp_path, chunk_tasks=2, solver="lbfgs")


def _runs_csv(path, n_groups):
    """n_groups Chinchilla-law point sets in one CSV, told apart by `group`."""
    frames = []
    for index, task in enumerate(synthetic.chinchilla_tasks(n_groups, seed=5, n_points=12)):
        frames.append(
            pl.DataFrame(
                {"group": f"g{index:03d}", "N": task.inputs[:, 0], "D": task.inputs[:, 1], "loss": task.target}
            )
        )
    pl.concat(frames).write_csv(path)


def _fit_command(data, out, *extra):
    return [
        sys.executable, "-m", "lawfit.cli", "fit", str(data), "--law", "chinchilla", "--map",
        "params=N,tokens=D,value=loss", "--group-by", "group", "--restarts", "3", "--chunk", "6",
        "--out", str(out), "--no-plot", "--quiet", *extra,
    ]  # fmt: skip


@pytest.fixture
def cli_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["LAWFIT_CACHE_DIR"] = str(tmp_path / "jax-cache")
    return env


def _results(out):
    return pl.read_parquet(out / "results.parquet")


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_rows(tmp_path, cli_env):
    data = tmp_path / "runs.csv"
    _runs_csv(data, 60)  # 10 chunks of 6
    reference = tmp_path / "reference"
    subprocess.run(_fit_command(data, reference), env=cli_env, check=True, timeout=600, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_fit_command(data, killed), env=cli_env, stderr=subprocess.PIPE)
    parts = killed / "parts" / "fits"
    deadline = time.monotonic() + 600
    while not list(parts.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = list(parts.glob("part-*.parquet"))
    assert 1 <= len(written) < 10
    assert not (killed / "results.parquet").exists()
    for path in written:  # every file left behind is complete and readable
        assert pl.read_parquet(path).height == 6

    resumed = subprocess.run(_fit_command(data, killed), env=cli_env, timeout=600, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = runner.read(parts)
    assert rows.height == 60 and rows["task_hash"].n_unique() == 60
    assert _results(killed).equals(_results(reference))


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_share_a_job_and_match_one_process(tmp_path, cli_env):
    data = tmp_path / "runs.csv"
    _runs_csv(data, 18)  # 3 chunks: process 0 takes chunks 0 and 2, process 1 takes chunk 1
    single = tmp_path / "single"
    subprocess.run(
        _fit_command(data, single, "--bootstrap", "4"), env=cli_env, check=True, timeout=600, capture_output=True
    )
    shared = tmp_path / "shared"
    port = _free_port()
    procs = [
        subprocess.Popen(
            _fit_command(
                data,
                shared,
                "--bootstrap",
                "4",
                "--distributed",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(pid),
            ),
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for pid in (0, 1)
    ]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    for pid, (proc, err) in enumerate(zip(procs, errors, strict=True)):  # both logs: one's failure may be the other's
        assert proc.returncode == 0, f"process {pid}: {err[-2000:]}\nother: {errors[1 - pid][-1500:]}"
    fits = runner.read(shared / "parts" / "fits")
    owner = dict(fits.select("chunk", "process").unique().iter_rows())
    assert owner == {0: 0, 1: 1, 2: 0}
    assert np.array_equal(fits["task_index"].to_numpy(), np.arange(18))
    assert _results(shared).equals(_results(single))

"""The batch split over local devices (2 forced host devices on CPU) gives the single-device answers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = r"""
import json
import numpy as np
import lawfit
from lawfit.types import Objective, Task

rng = np.random.default_rng(0)
tasks = []
for i in range(5):
    x = np.exp(rng.uniform(40, 46, 30))
    y = (1.5 + 0.1 * i) + np.exp(8.0 + 0.2 * i) * x ** -(0.2 + 0.01 * i) * np.exp(rng.normal(0, 0.01, 30))
    tasks.append(Task(law="compute", inputs=x[:, None], target=y, objective=Objective("squared", space="log"),
                      init="varpro"))
# One task with an explicit grid of restarts: the restarts are what gets split.
tasks_grid = [Task(law="compute", inputs=tasks[0].inputs, target=tasks[0].target,
                   objective=Objective("squared", space="log"), init="grid")]
import jax
out = lawfit.fit_many(tasks)
grid = lawfit.fit_many(tasks_grid, keep_restarts=True)
print(json.dumps({
    "devices": jax.local_device_count(),
    "objective": out["objective"].to_list(),
    "params": out["params"].to_list(),
    "status": out["status"].to_list(),
    "grid_restarts": grid["restart_objective"].to_list(),
}))
"""


def _run(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_devices_give_the_single_device_rows():
    one, two = _run(1), _run(2)
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["status"] == one["status"]
    assert two["objective"] == pytest.approx(one["objective"], rel=1e-12)
    for a, b in zip(one["params"], two["params"], strict=True):
        assert b == pytest.approx(a, rel=1e-9)
    np.testing.assert_allclose(
        np.array(two["grid_restarts"], dtype=float), np.array(one["grid_restarts"], dtype=float), rtol=1e-9
    )


@pytest.mark.slow  # the two-device rows test below stays fast
def test_reproduce_chinchilla_on_two_devices():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    proc = subprocess.run(
        [sys.executable, "-m", "lawfit.cli", "reproduce", "chinchilla", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["devices"] == 2 and out["n_starts"] == 4500
    assert out["objective"] <= 1.01828e-3
    for key in ("A", "B", "E", "alpha", "beta"):
        assert out[key] == pytest.approx(out["reference"][key], rel=5e-3)

"""The program archive: a fresh process loads exported programs instead of tracing them, gets the
same rows, and never loads a program for code it cannot name."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np

from lawfit import kernels
from lawfit.batch import archive, programs
from lawfit.kernels import formula
from lawfit.types import Objective

JOB = """
import json, sys
from lawfit import cli, synthetic, api
from lawfit.batch import programs
cli.enable_compile_cache()
rows = api.fit_many(list(synthetic.chinchilla_tasks(40, n_points=24, init=4)), progress=False)
print(json.dumps({"count": programs.STATS.count, "loaded": programs.STATS.loaded, "scipy": "scipy" in sys.modules,
                  "objective": rows["objective"].to_list(), "params": rows["params"].to_list()}))
"""


def _job(cache: str, version: str | None = None) -> dict:
    """The job in a fresh process; `version` stands in for lawfit's source hash (an upgrade)."""
    env = dict(os.environ, LAWFIT_CACHE_DIR=cache)
    prelude = f"from lawfit.batch import archive; archive._source_hash = lambda: {version!r}\n" if version else ""
    out = subprocess.run(
        [sys.executable, "-c", prelude + JOB], env=env, capture_output=True, text=True, check=True, timeout=600
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fresh_process_loads_archived_programs_with_identical_rows(tmp_path):
    first = _job(str(tmp_path))
    assert first["count"] >= 2 and first["loaded"] == 0
    assert len(list((tmp_path / "lawfit-programs").glob("*.jaxexport"))) == first["count"]
    executables = list((tmp_path / "lawfit-programs").glob("*.xla"))
    assert len(executables) == first["count"]
    # The second process loads the compiled executables; none calls LAPACK, so nothing imports scipy
    # (~0.12 s of a fresh process). The third, without them, compiles from the exports.
    second = _job(str(tmp_path))
    assert second["loaded"] == second["count"] == first["count"] and not second["scipy"]
    assert second["objective"] == first["objective"] and second["params"] == first["params"]
    for path in executables:
        path.write_bytes(b"not an executable" if path == executables[0] else b"")
    third = _job(str(tmp_path))
    assert third["loaded"] == third["count"] == first["count"]
    assert third["objective"] == first["objective"] and third["params"] == first["params"]
    # Those compiles came from the XLA cache, whose executables cannot be re-serialized: each was
    # compiled once more under another cache key and archived, so the next process loads them.
    assert all(path.stat().st_size > 100 for path in executables)
    fourth = _job(str(tmp_path))
    assert fourth["loaded"] == fourth["count"] == first["count"] and not fourth["scipy"]
    assert fourth["objective"] == first["objective"] and fourth["params"] == first["params"]


def test_every_version_archives_its_executables(tmp_path):
    # A program whose HLO an upgrade leaves unchanged compiles under a new XLA cache key in each
    # version, so each version archives its executable (before, the third version found both of
    # its cache keys taken by the first two and archived none).
    runs = [_job(str(tmp_path), version) for version in ("v1", "v2", "v3")]
    assert len({run["count"] for run in runs}) == 1
    assert len(list((tmp_path / "lawfit-programs").glob("*.xla"))) == 3 * runs[0]["count"]
    assert all(run["objective"] == runs[0]["objective"] for run in runs)


WARM_JOB = """
import json
from lawfit.batch import warm
warm.start([COMMAND], warm.programs_directory())  # as the command line does, before importing the rest
from lawfit import cli, synthetic, api
from lawfit.batch import programs
cli.enable_compile_cache()
rows = api.fit_many(list(synthetic.chinchilla_tasks(40, n_points=24, init=4)), progress=False)
print(json.dumps({"count": programs.STATS.count, "taken": warm.STATS["taken"], "objective": rows["objective"].to_list(),
                  "params": rows["params"].to_list()}))
"""


def _warm_job(cache, command: str) -> dict:
    code = WARM_JOB.replace("COMMAND", repr(command))
    env = dict(os.environ, LAWFIT_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_command_line_loads_its_last_programs_ahead_with_identical_rows(tmp_path):
    first = _warm_job(tmp_path, "job")
    (manifest,) = (tmp_path / "lawfit-programs" / "manifests").glob("*.txt")
    listed = manifest.read_text().split()
    assert first["taken"] == 0 and len(listed) == first["count"] >= 2
    # The same command line again: every program comes from the loads started before lawfit imported.
    second = _warm_job(tmp_path, "job")
    assert second["taken"] == second["count"] == first["count"]
    assert second["objective"] == first["objective"] and second["params"] == first["params"]
    # Another command line has no manifest yet; a listed program whose file is gone is loaded (here:
    # compiled) the usual way.
    assert _warm_job(tmp_path, "other")["taken"] == 0
    name = listed[0].split(":")[0]
    next((tmp_path / "lawfit-programs").glob(f"{name}-*.xla")).unlink()
    third = _warm_job(tmp_path, "job")
    assert third["taken"] == first["count"] - 1
    assert third["objective"] == first["objective"] and third["params"] == first["params"]


def _key(law):
    fit = programs.Fit(law, Objective(), tuple(range(law.n_params)), 24)
    return programs.PoolKey(fit, "lm", (), 64, 1)


def test_fingerprints_name_lawfit_code_only():
    devices = tuple(jax.local_devices()[:1])
    chinchilla = kernels.get("chinchilla")
    assert archive.fingerprint(_key(chinchilla), devices) == archive.fingerprint(_key(chinchilla), devices)
    assert archive.fingerprint(_key(chinchilla), devices) != archive.fingerprint(
        _key(kernels.get("kaplan_nd")), devices
    )
    # A law written outside lawfit cannot be named: always traced, never loaded.
    own = kernels.Law(
        name="chinchilla",
        param_names=("e",),
        inputs=("params",),
        predict=lambda theta, feats: np.exp(theta[0]) + 0.0 * feats[:, 0],
        formula="E",
        reference="test",
        init_grid={"e": (0.0,)},
    )
    assert archive.fingerprint(_key(own), devices) is None

    # Formula laws are named by their text: two formulas differ, the same formula agrees.
    def law(top):
        bounds = {"E": (0, 10), "A": (0, 1e3), "alpha": (0, top)}
        return formula.from_formula("E + A * N**-alpha", inputs=["N"], bounds=bounds)

    one, same, other = law(2), law(2), law(3)
    assert archive.fingerprint(_key(one), devices) == archive.fingerprint(_key(same), devices) is not None
    assert archive.fingerprint(_key(one), devices) != archive.fingerprint(_key(other), devices)


def test_prefetch_loads_archived_programs_only(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "DIRECTORY", tmp_path)
    # An objective no other test uses: a program another test compiled is an XLA-cache hit here (the
    # session shares one cache), which cannot be archived.
    fit = programs.Fit(kernels.get("chinchilla"), Objective(delta=0.0037), tuple(range(5)), 40)
    archived, other = (programs.PoolKey(fit, "lm", (), rows, 1) for rows in (128, 256))
    programs.pool(archived)  # compiled here, so archived
    assert archive.has_executable(archive.fingerprint(archived, programs.lane_devices(archived)))
    monkeypatch.delitem(programs._COMPILED, archived)
    loaded = programs.STATS.loaded
    loads = programs.prefetch([archived, other])
    assert len(loads) == 1
    loads[0].result()
    # Loaded in the background; the program not archived is not compiled ahead of its use.
    assert programs.is_compiled(archived) and not programs.is_compiled(other)
    assert programs.STATS.loaded == loaded + 1


def test_unreadable_archive_file_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "DIRECTORY", tmp_path)
    (tmp_path / "abc.jaxexport").write_bytes(b"not an export")
    assert archive.load("abc") is None
    assert archive.load(None) is None

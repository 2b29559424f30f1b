"""The execution layer (`lawfit.batch`): fixed pool shapes, refills, determinism, declared programs."""

import dataclasses

import numpy as np
import polars as pl
import pytest

import lawfit
from lawfit import kernels, plan, runner, synthetic
from lawfit.batch import Tuning, archive, programs
from lawfit.batch.solve import pool_keys
from lawfit.types import Objective, Race

COLUMNS = ["task_hash", "objective", "status", "iterations", "evaluations", "restart_objective", "restart_params"]


def _rows(frame: pl.DataFrame) -> dict:
    return {column: frame[column].to_list() for column in COLUMNS}


def test_same_job_gives_the_same_rows_bit_for_bit_whatever_the_chunking_or_pool(tmp_path):
    """Twice, in chunks of other sizes, through the runner, and with other pool sizes (so other tail
    shapes and refill orders): every row identical, to the bit."""
    tasks = list(synthetic.chinchilla_tasks(80, n_points=12, init=6))
    whole = lawfit.fit_many(tasks, keep_restarts=True)
    assert _rows(lawfit.fit_many(tasks, keep_restarts=True)) == _rows(whole)
    chunked = pl.concat(
        [lawfit.fit_many(tasks[i : i + 30], keep_restarts=True) for i in range(0, 80, 30)], how="diagonal_relaxed"
    )
    assert _rows(chunked) == _rows(whole)
    runner.run(tasks, tmp_path / "job", chunk_tasks=32, keep_restarts=True, progress=False)
    assert _rows(runner.read(tmp_path / "job")) == _rows(whole)
    # Smaller pools, and a tail that moves down the ladder at once.
    small = Tuning(pool_lanes=128, steps_per_call=3, shrink_lane_point_steps=0)
    assert _rows(lawfit.fit_many(tasks, keep_restarts=True, tuning=small)) == _rows(whole)


def test_long_series_rows_do_not_depend_on_the_pool():
    """A long series' restarts (one a row, each lane summing over its own points in point order): a
    task's rows are the same to the bit in a job's full pool and in a small one. (Scanned, rows
    shared by a task's restarts once rounded by the pool's row count.)"""
    tasks = list(synthetic.chinchilla_tasks(12, n_points=200, init=4))
    whole = lawfit.fit_many(tasks, keep_restarts=True, progress=False)
    small = lawfit.fit_many(tasks[:3], keep_restarts=True, progress=False, tuning=Tuning(pool_lanes=64))
    assert _rows(small) == {column: values[:3] for column, values in _rows(whole).items()}


def test_varpro_starts_and_checks_do_not_depend_on_the_batch():
    """Variable-projection starts and the conditioning check run per task (split over the devices):
    a task's rows are the same, to the bit, fitted alone (a batch of two, one a device) and among 40
    (a batch of 32 and one of 8). Vmapped over tasks, their products rounded by batch size."""
    tasks = list(synthetic.chinchilla_tasks(40, n_points=24, init="varpro"))
    whole = lawfit.fit_many(tasks, keep_restarts=True)
    alone = pl.concat([lawfit.fit_many([task], keep_restarts=True) for task in tasks[:3]])
    assert _rows(alone) == _rows(whole.head(3))
    assert alone["log10_cond"].to_list() == whole.head(3)["log10_cond"].to_list()


def test_a_race_prunes_restarts_far_behind_and_its_rows_do_not_depend_on_the_pool():
    """64 restarts of one task a row over 160 points (the stacked pass): a race prunes restarts far
    behind their task's best; pausing at checkpoints leaves every other restart's trajectory as it
    is (its objective is the unraced job's, to the bit); and the rows are the same, to the bit, for
    tasks fitted alone (a one-row pool split over the devices by lanes) and together (by rows)."""
    tasks = list(synthetic.chinchilla_tasks(6, n_points=160, init=64))
    race = lawfit.Race(every=10, factor=10.0, stall=0.0)
    # The unraced baseline in the same layout: a race whose first checkpoint is beyond the budget.
    plain = lawfit.fit_many(tasks, keep_restarts=True, max_steps=300, race=lawfit.Race(every=10**6))
    raced = lawfit.fit_many(tasks, keep_restarts=True, max_steps=300, race=race)
    statuses = np.array(raced["restart_status"].to_list())
    assert (statuses == "pruned").sum() > 0
    # A truncated restart ends no lower than it would have (the solver only accepts descents).
    assert (raced["objective"].to_numpy() >= plain["objective"].to_numpy()).all()
    ran = (statuses != "pruned") & (statuses != "stalled")
    ours, theirs = np.array(raced["restart_objective"].to_list()), np.array(plain["restart_objective"].to_list())
    assert ran.sum() > 0 and (ours[ran] == theirs[ran]).all()
    alone = pl.concat([lawfit.fit_many([task], keep_restarts=True, max_steps=300, race=race) for task in tasks[:2]])
    assert _rows(alone) == _rows(raced.head(2))
    # Extrapolating: restarts that would stay behind the best even at their last gain per checkpoint
    # to the end of the budget stop too; more of them, and rows as independent of the pool.
    ahead = dataclasses.replace(race, extrapolate=True)
    extrapolated = lawfit.fit_many(tasks, keep_restarts=True, max_steps=300, race=ahead)
    assert (np.array(extrapolated["restart_status"].to_list()) == "pruned").sum() > (statuses == "pruned").sum()
    assert (extrapolated["objective"].to_numpy() >= plain["objective"].to_numpy()).all()
    alone = pl.concat([lawfit.fit_many([task], keep_restarts=True, max_steps=300, race=ahead) for task in tasks[:2]])
    assert _rows(alone) == _rows(extrapolated.head(2))


def test_race_options_are_checked():
    with pytest.raises(ValueError, match="Race.every must be >= 1"):
        lawfit.Race(every=0)
    with pytest.raises(ValueError, match="Race.factor must be >= 1"):
        lawfit.Race(factor=0.5)
    with pytest.raises(ValueError, match=r"Race.stall must be in \[0, 1\)"):
        lawfit.Race(stall=1.0)


@pytest.mark.parametrize(("init", "n_small", "n_big"), [("varpro", 60, 100), (8, 100, 200)])
def test_rows_do_not_depend_on_bucket_merging(init, n_small, n_big):
    """Beside larger tasks a task's small bucket merges into theirs (`plan.group`), so the length it
    is padded to depends on which tasks share its chunk; its rows must not (the variable-projection
    scan and the lanes sum over the points in point order, and padding adds exact zeros)."""
    small = synthetic.chinchilla_task(1, n_points=n_small, init=init)
    big = [synthetic.chinchilla_task(100 + j, n_points=n_big, init=init) for j in range(3)]
    (merged,) = plan.group([plan.prepare(i, task) for i, task in enumerate([small, *big])], 8)
    assert merged.n_pad > plan.bucket_size(n_small)
    alone = lawfit.fit_many([small], keep_restarts=True)
    beside = lawfit.fit_many([small, *big], keep_restarts=True)
    assert _rows(alone) == _rows(beside.head(1))
    # The conditioning check at the best point too (its J^T J is summed in point order).
    np.testing.assert_array_equal(alone["log10_cond"].to_numpy(), beside["log10_cond"].to_numpy()[:1])


def _nine_parameter_task(index: int, n_points: int, law=None) -> lawfit.Task:
    """A task of a 9-parameter formula law: more than `UNROLL_MAX`, so its lanes take the stacked pass."""
    law = law or kernels.from_formula(
        "c + a1*x^-b1 + a2*y^-b2 + a3*(x*y)^-b3 + d*log(x) + k*log(y)",
        inputs=("x", "y"),
        bounds={"c": (0, 5), "a1": (0, 50), "b1": (0, 1), "a2": (0, 50), "b2": (0, 1), "a3": (0, 50),
                "b3": (0, 1), "d": (-1, 1), "k": (-1, 1)},
    )  # fmt: skip
    rng = np.random.default_rng(index)
    x, y = 10 ** rng.uniform(0, 3, n_points), 10 ** rng.uniform(0, 3, n_points)
    target = 1.5 + 10 * x**-0.3 + 20 * y**-0.4 + 5 * (x * y) ** -0.2 + rng.normal(0, 0.01, n_points)
    inputs = np.stack([x, y], 1)
    objective = Objective("squared", space="raw")
    return lawfit.Task(law=law, inputs=inputs, target=target, objective=objective, init=8, seed=index)


def test_stacked_rows_do_not_depend_on_bucket_merging():
    """Laws of more than 8 free parameters sum each lane's products as matrix products over its
    points: taken over all the padded points at once they rounded by the padded length (6 of this
    task's 8 restarts ended elsewhere, at ~1e-14, beside larger tasks). They are summed 64 points at
    a time, in point order."""
    small = _nine_parameter_task(1, 60)
    big = [_nine_parameter_task(100 + j, 100, small.law) for j in range(3)]
    (merged,) = plan.group([plan.prepare(i, task) for i, task in enumerate([small, *big])], 8)
    assert merged.n_pad > plan.bucket_size(60)
    alone = lawfit.fit_many([small], keep_restarts=True)
    beside = lawfit.fit_many([small, *big], keep_restarts=True)
    assert _rows(alone) == _rows(beside.head(1))


def test_a_short_tail_finishes_in_its_pool_unless_the_smaller_one_is_compiled(tmp_path, monkeypatch):
    """Moving a tail to a smaller pool costs a compile: a small job's tail stays where it is, unless
    the smaller program is compiled already or tails have spent about as much in larger pools."""
    monkeypatch.setattr(archive, "DIRECTORY", tmp_path)  # an empty archive: nothing is ready to load
    programs.clear()
    tasks = list(synthetic.chinchilla_tasks(40, n_points=12, init=8))  # 320 fits: a 512-lane pool

    def pools() -> list[int]:
        return sorted(key.rows * key.width for key in programs._COMPILED if isinstance(key, programs.PoolKey))

    stay = lawfit.fit_many(tasks, keep_restarts=True)
    assert pools() == [512]
    # The tail's rent towards the smallest program is kept for the process: a later job whose
    # threshold that rent reaches compiles it at once.
    smallest = programs.min_together_lanes(Tuning().min_lanes)
    if smallest >= 512:
        pytest.skip("with 8 or more CPU devices the tail pool is the 512-lane one itself")
    ((key, rent),) = programs.TAIL_RENT.items()
    assert key.rows * key.width == smallest and rent > 0
    move = lawfit.fit_many(tasks, keep_restarts=True, tuning=Tuning(shrink_lane_point_steps=rent))
    assert pools() == [smallest, 512]
    assert _rows(move) == _rows(stay)


def test_a_job_compiles_only_its_declared_programs():
    """The number of compiled programs is bounded by the group's ladder, not by the job's length."""
    programs.clear()
    before = programs.STATS.count
    tasks = list(synthetic.chinchilla_tasks(400, n_points=12, init=4))
    lawfit.fit_many(tasks, tuning=Tuning(pool_lanes=256))
    first = programs.STATS.count - before
    # A pool ladder of three sizes, one conditioning batch size or two.
    assert 1 <= first <= 3 + 2
    lawfit.fit_many(tasks + tasks[:77], tuning=Tuning(pool_lanes=256))
    assert programs.STATS.count - before - first <= 2  # at most a new tail batch size for the checks


def test_pool_ladder_shapes():
    tuning = Tuning()
    short = plan.prepare(0, next(synthetic.chinchilla_tasks(1, n_points=24, init=8)))
    (grp,) = plan.group([short], 8)
    # One restart a row, at least MIN_DEVICE_LANES a device (a fit rounds alike in every pool).
    floor = programs.min_together_lanes(tuning.min_lanes)
    keys = pool_keys(grp, "lm", (), tuning)
    assert [(k.rows, k.width) for k in keys] == [(4096, 1), (512, 1), (floor, 1)]
    grid_task = lawfit.tasks_from_frame(lawfit.datasets.load("epoch-chinchilla"), "chinchilla", init="grid")[0]
    (grp,) = plan.group([plan.prepare(0, grid_task)], 8)
    # 4500 starts, a lane each; 240 points padded to 256 fill `lane_points` with 1,024 lanes.
    lanes = tuning.lane_points // 256
    assert lanes == 1024
    keys = pool_keys(grp, "lm", (), tuning)
    assert [(k.rows, k.width) for k in keys] == [(lanes, 1), (max(lanes // 8, floor), 1)]
    keys = pool_keys(grp, "lm", (), tuning, Race())
    assert [(k.rows, k.width) for k in keys] == [(1, lanes), (1, lanes // 8), (1, 64)]  # raced: one wide row, narrowing


@pytest.mark.parametrize(("n", "padded"), [(1, 8), (8, 8), (9, 16), (24, 24), (65, 80), (256, 256), (257, 384),
                                           (384, 384), (385, 512)])  # fmt: skip
def test_bucket_sizes(n, padded):
    assert plan.bucket_size(n) == padded


def test_restarts_beyond_the_pool_width_stream_through_one_row():
    """A task with more starts than lanes (the 4500-start grid's case): every start is solved once,
    and a start's result does not depend on the pool it ran in."""
    rng = np.random.default_rng(2)
    x = np.geomspace(1e18, 1e22, 40)
    y = 1.7 + np.exp(9) * x**-0.3 * np.exp(rng.normal(0, 0.01, x.size))
    task = lawfit.Task(
        law="compute", inputs=x[:, None], target=y, init=300, objective=Objective("squared", space="log")
    )
    wide = lawfit.fit_many([task], keep_restarts=True)
    narrow = lawfit.fit_many([task], keep_restarts=True, tuning=Tuning(pool_lanes=64, min_lanes=8))
    assert wide["n_restarts"][0] == 300 and wide["status"][0] == "converged"
    assert wide["restart_objective"].to_list() == narrow["restart_objective"].to_list()


def test_random_starts_are_uniform_in_the_box_and_fixed_per_task():
    """Counter-hash draws: inside the law's start box, the same for a task alone or in any batch,
    different across tasks and restarts, and uniform (a KS test per parameter over 4,000 draws)."""
    from scipy import stats

    law = kernels.get("chinchilla")
    free = tuple(range(law.n_params))
    low, high = plan._box_of(law, free)
    draws = plan.random_starts(law, free, range(500), 8)
    assert draws.shape == (500, 8, law.n_params)
    assert (draws >= low).all() and (draws <= high).all()
    alone = plan.random_starts(law, free, [137], 8)[0]
    np.testing.assert_array_equal(alone, draws[137])
    assert plan.resolve_starts(law, 8, free, 137)[1].tolist() == alone.tolist()
    assert np.unique(draws.reshape(-1, law.n_params), axis=0).shape[0] == 4000
    unit = ((draws - low) / (high - low)).reshape(-1, law.n_params)
    for column in unit.T:
        assert stats.kstest(column, "uniform").pvalue > 1e-3
    # Parameters of one draw are not correlated with each other.
    assert np.abs(np.corrcoef(unit.T) - np.eye(law.n_params)).max() < 0.1


def test_rows_do_not_depend_on_how_many_pools_share_a_program():
    """A program's pools share its queue and take fits as their lanes free up; which pool (and
    which device call) a fit ran in does not change its row."""
    tasks = list(synthetic.chinchilla_tasks(300, n_points=12, init=4))
    one = lawfit.fit_many(tasks, keep_restarts=True, tuning=Tuning(pools_per_program=1, pool_lanes=256))
    for count in (2, 3):
        many = lawfit.fit_many(tasks, keep_restarts=True, tuning=Tuning(pools_per_program=count, pool_lanes=256))
        assert _rows(many) == _rows(one)


def test_draws_screen_takes_each_blocks_best_start_that_can_move_every_parameter():
    """One start per block of consecutive draws: among the candidates with the fewest parameters
    whose gradient is exactly zero (a clipped term, a max(A, eps) at A < 0), the lowest objective;
    one with a non-finite f or gradient only when its block has nothing else."""
    inf, nan = np.inf, np.nan
    ranked = np.array([[3.0, 1.0, 2.0, 5.0, 0.5, 4.0, inf, 7.0]])
    grad = np.ones((1, 8, 2))
    grad[0, 1] = [0.0, 1.0]  # block 0: the lowest f, but one parameter it cannot move
    grad[0, 3] = grad[0, 5] = [0.0, 1.0]  # block 1: the lowest f has two dead parameters, the others one
    grad[0, 4] = [0.0, 0.0]
    grad[0, 7] = [nan, 1.0]  # block 2 (2 draws and padding): neither is usable; the lower f
    order = np.asarray(programs._best_of_blocks(ranked, grad, 3))
    assert order.tolist() == [[2, 5, 7]]


def test_a_segment_hands_out_the_same_fits_in_one_go_as_task_by_task():
    from lawfit.batch.pool import Segment

    rng = np.random.default_rng(0)
    for n_restarts in (1, 3, 8):
        one, other = (Segment(None, np.zeros((9, n_restarts, 2)), lambda _: None) for _ in range(2))
        while one.pending:
            n = int(rng.integers(1, 12))
            tasks, restarts = one.take(n)
            expected = []  # what the task-by-task loop loads into n free rows
            while len(expected) < n and other.first_pending < other.n_tasks:
                task = other.first_pending
                loaded = other.load(np.arange(min(n - len(expected), n_restarts)), task)
                expected += [(task, int(r)) for r in loaded]
            assert list(zip(tasks.tolist(), restarts.tolist(), strict=True)) == expected
            assert one.first_pending == other.first_pending and (one.next_restart == other.next_restart).all()
        assert one.take(5)[0].size == 0

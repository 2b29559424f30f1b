"""Fits summed over tables of distinct inputs (`solvers.grid`) against the same fits summed over the
points: the objective, gradient and Gauss-Newton matrix, then whole `fit_many` jobs."""

import dataclasses

import jax
import numpy as np
import pytest

import lawfit
from lawfit import kernels, plan, solvers
from lawfit.batch import Tuning, programs
from lawfit.types import Objective

SQUARED_RAW = Objective("squared", space="raw")


def learning_curves(rng, n_sizes: int, n_steps: int, weights: bool = False, **task_options) -> lawfit.Task:
    """A few model sizes on a shared token grid, some checkpoints missing, one point repeated with
    another loss (so a table cell holds two points), optional random point weights."""
    sizes = np.geomspace(1e7, 1e9, n_sizes)
    tokens = np.geomspace(1e8, 1e11, n_steps)
    grid = np.array([(n, d) for n in sizes for d in tokens if rng.uniform() < 0.8])
    grid = np.vstack([grid, grid[3]])
    loss = 1.8 + 400 * grid[:, 0] ** -0.34 + 900 * grid[:, 1] ** -0.28
    loss = loss * np.exp(rng.normal(0, 0.02, loss.size))
    point_weights = rng.uniform(0.2, 3.0, loss.size) if weights else None
    return lawfit.Task(
        law="chinchilla", inputs=grid, target=loss, weights=point_weights, objective=SQUARED_RAW, **task_options
    )


def packed_problems(tasks, grid: bool):
    """The device problems and starts of `tasks` as `fit_many` builds them, all in one group padded to
    the largest table (rows and columns) and point count."""
    prepared = [plan.prepare(i, t) for i, t in enumerate(tasks)]
    n_pad = max(plan.bucket_size(item.n_points) for item in prepared)
    shape = (
        max(item.distinct[0].size for item in prepared),
        plan.table_size(max(item.distinct[1].size for item in prepared)),
    )
    first = prepared[0]
    key = plan.GroupKey(first.law, first.task.objective, first.free, "starts", first.n_starts, grid)
    grp = plan.Group(key, n_pad, prepared, shape if grid else None)
    batch = plan.pack(grp, grp.members)
    problems = jax.jit(lambda b: programs.problems(grp.law, b))(batch)
    return grp, problems, plan.pack_starts(grp, grp.members)


@pytest.mark.parametrize("fixed", [None, {"a": 6.0, "alpha": 0.34}])
def test_table_sums_equal_point_sums(fixed):
    rng = np.random.default_rng(3)
    starts = np.array([[6.0, 6.8, 0.6, 0.34, 0.28], [5.0, 7.5, 0.2, 0.5, 0.2], [7.0, 6.0, 0.9, 0.3, 0.35]])
    tasks = [
        learning_curves(rng, n_sizes=2 + k, n_steps=30 + 7 * k, weights=k % 2 == 1, init=starts, fixed=fixed)
        for k in range(4)
    ]
    grp, problems, theta = packed_problems(tasks, grid=True)
    _, point_problems, _ = packed_problems(tasks, grid=False)
    theta = theta + rng.normal(0, 0.05, theta.shape)
    on_table = solvers.GridEvaluator(grp.law, grp.free)(theta, problems)
    on_points = solvers.Evaluator(grp.law, grp.objective, grp.free)(theta, point_problems)
    np.testing.assert_allclose(on_table.f, on_points.f, rtol=1e-11)
    # The expanded margins cancel: compare against the size of the terms, not the (small) result.
    for key in ("grad", "hess"):
        scale = float(np.abs(np.asarray(getattr(on_points, key))).max())
        np.testing.assert_allclose(getattr(on_table, key), getattr(on_points, key), rtol=1e-9, atol=1e-11 * scale)


@pytest.mark.parametrize(
    ("solver", "init", "rtol"),
    [
        pytest.param("lm", 6, 1e-9, marks=pytest.mark.slow),  # LM on tables: also every hitchhiker test
        pytest.param("lbfgs", 6, 1e-6, marks=pytest.mark.slow),
        ("lm", "screen", 1e-9),
    ],
)
def test_fit_many_on_tables_gives_the_point_fits(monkeypatch, solver, init, rtol):
    """Same fits either way: Levenberg-Marquardt, L-BFGS (gradient only) and grid screening (objective
    only). L-BFGS stops on looser tolerances, so rounding may move its end point further."""
    rng = np.random.default_rng(4)
    tasks = [
        learning_curves(rng, n_sizes=3 + k % 3, n_steps=40 + 9 * k, weights=k % 2 == 0, init=init) for k in range(5)
    ]
    prepared = [plan.prepare(i, t) for i, t in enumerate(tasks)]
    assert all(grp.grid is not None for grp in plan.group(prepared, 8))
    on_tables = lawfit.fit_many(tasks, solver=solver, progress=False)
    monkeypatch.setattr(plan, "GRID_CELLS_PER_POINT", 0)
    assert all(grp.grid is None for grp in plan.group(prepared, 8))
    on_points = lawfit.fit_many(tasks, solver=solver, progress=False)
    assert on_tables["status"].to_list() == on_points["status"].to_list()
    np.testing.assert_allclose(on_tables["objective"].to_numpy(), on_points["objective"].to_numpy(), rtol=rtol)
    for name in ("alpha", "beta", "E"):
        np.testing.assert_allclose(on_tables[name].to_numpy(), on_points[name].to_numpy(), rtol=1e3 * rtol)


def test_tables_only_where_they_are_cheaper_and_exact():
    rng = np.random.default_rng(5)
    curves = learning_curves(rng, n_sizes=4, n_steps=50, init=2)
    # Every point its own size and token count: a table of n x n cells, dearer than the points.
    scattered = dataclasses.replace(
        curves, inputs=np.column_stack([rng.uniform(1e7, 1e9, 60), rng.uniform(1e9, 1e11, 60)])
    )
    scattered = dataclasses.replace(scattered, target=np.full(60, 3.0))
    huber_log = dataclasses.replace(curves, objective=Objective())
    kaplan = lawfit.Task(law="kaplan_nd", inputs=curves.inputs, target=curves.target, objective=SQUARED_RAW)
    groups = plan.group([plan.prepare(i, t) for i, t in enumerate([curves, scattered, huber_log, kaplan])], 8)
    on_tables = {id(g.members[0].task): g.grid for g in groups}
    assert on_tables[id(curves)] is not None
    assert on_tables[id(scattered)] is None
    assert on_tables[id(huber_log)] is None  # Huber and log residuals do not sum over a table
    assert on_tables[id(kaplan)] is None  # the law is not separable
    assert kernels.get("chinchilla").separable is not None


def test_a_pool_row_alone_gives_the_batched_table_sums():
    """Pools step table fits one row (one task's restarts) at a time (`GridEvaluator.lanes`): the
    same sums as the pass over a whole batch, to rounding."""
    rng = np.random.default_rng(6)
    starts = np.array([[6.0, 6.8, 0.6, 0.34, 0.28], [5.0, 7.5, 0.2, 0.5, 0.2]])
    tasks = [learning_curves(rng, n_sizes=2 + k, n_steps=20 + 5 * k, init=starts) for k in range(3)]
    grp, problems, theta = packed_problems(tasks, grid=True)
    batched = solvers.GridEvaluator(grp.law, grp.free)(theta, problems)
    by_row = solvers.GridEvaluator(grp.law, grp.free, width=theta.shape[1])
    assert by_row.grouped and by_row.group_size == theta.shape[1]
    for task in range(len(tasks)):
        row = by_row.lanes(theta[task], np.full(theta.shape[1], task), problems)
        for key in ("f", "grad", "hess"):
            np.testing.assert_allclose(getattr(row, key), getattr(batched, key)[task], rtol=1e-12)


def test_table_fits_do_not_depend_on_the_pool_or_the_batch():
    """Each row of a table pool is evaluated alone, so a task's rows are the same to the bit with
    other tasks, alone, or in a pool of another size (tables padded alike: 4 x 32 cells here)."""
    rng = np.random.default_rng(7)
    tasks = [learning_curves(rng, n_sizes=3 + k % 2, n_steps=24 + k, init=4) for k in range(6)]
    columns = ["objective", "status", "iterations", "restart_objective", "restart_params"]
    whole = lawfit.fit_many(tasks, keep_restarts=True, progress=False).select(columns)
    alone = [lawfit.fit_many([t], keep_restarts=True, progress=False).select(columns) for t in tasks[:2]]
    small = Tuning(lane_cells=1 << 9)
    smaller = lawfit.fit_many(tasks, keep_restarts=True, progress=False, tuning=small).select(columns)
    assert smaller.to_dicts() == whole.to_dicts()
    assert [frame.to_dicts()[0] for frame in alone] == whole.to_dicts()[:2]


def test_table_fits_do_not_depend_on_the_tables_beside_them():
    """A small table merged into a group of larger ones is padded to their shape (more rows and
    columns); every table sum is halved (`linalg.halving_sum`), so its rows are the same to the
    bit as alone, where it is padded to its own shape."""
    rng = np.random.default_rng(8)
    small = learning_curves(rng, n_sizes=3, n_steps=20, init=4)
    large = [learning_curves(rng, n_sizes=5, n_steps=40, init=4) for _ in range(3)]
    alone = plan.group([plan.prepare(0, small)], 8)
    beside = plan.group([plan.prepare(i, t) for i, t in enumerate([small, *large])], 8)
    assert [g.grid for g in alone] == [(4, 32)]
    assert [g.grid for g in beside] == [(8, 64)]  # merged, padded to the larger tables
    columns = ["objective", "status", "iterations", "restart_objective", "restart_params"]
    rows_alone = lawfit.fit_many([small], keep_restarts=True, progress=False).select(columns)
    rows_beside = lawfit.fit_many([small, *large], keep_restarts=True, progress=False).select(columns)
    assert rows_alone.to_dicts() == rows_beside.head(1).to_dicts()


def test_halving_sums_ignore_zero_padding():
    """`halving_sum` is the sum, and zero padding (to any length, power of two or not) leaves it
    unchanged to the bit."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 5, 7))
    halving_sum = solvers.linalg.halving_sum
    for shape in [(3, 8, 32), (3, 6, 9), (3, 16, 8)]:
        padded = np.zeros(shape)
        padded[:, :5, :7] = x
        for axes in [(1,), (2,), (1, 2)]:
            halved = np.asarray(halving_sum(x, axes, np.zeros(())))
            np.testing.assert_allclose(halved, x.sum(axis=axes), rtol=1e-14, atol=1e-14)
            on_padded = np.asarray(halving_sum(padded, axes, np.zeros(())))
            kept = tuple(slice(0, n) for n in halved.shape)
            assert (on_padded[kept] == halved).all()


def test_product_sums_are_halved_products():
    """`product_sum` (slices multiplied in its first halving) gives `halving_sum` of the product to the
    bit, for broadcast operands and lengths that are not powers of two, and the sum to rounding."""
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(3, 4, 1, 37)), rng.normal(size=(3, 1, 5, 37))
    zero = np.zeros(())
    linalg = solvers.linalg
    halved = np.asarray(linalg.halving_sum(a * b, (3,), zero))
    assert (np.asarray(jax.jit(linalg.product_sum, static_argnums=2)(a, b, -1, zero)) == halved).all()
    np.testing.assert_allclose(halved, (a * b).sum(axis=-1), rtol=1e-13, atol=1e-13)
    rows, counts = rng.normal(size=(2, 3, 6, 1)), rng.uniform(size=(6, 16))
    expected = np.einsum("kRa,ab->kRb", rows[..., 0], counts)
    np.testing.assert_allclose(np.asarray(linalg.product_sum(rows, counts, -2, zero)), expected, rtol=1e-13)


@pytest.mark.parametrize(("n_sizes", "n_steps"), [(3, 20), (4, 300), (7, 33), (8, 700)])
def test_table_sums_do_not_depend_on_the_padding(n_sizes, n_steps):
    """f, g and J^T J of one pool row, its table padded to its own shape and to 2-4x the rows and
    columns: the same to the bit (XLA's reductions and the dot product over the rows were not)."""
    rng = np.random.default_rng(n_steps)
    task = learning_curves(rng, n_sizes=n_sizes, n_steps=n_steps, init=4)
    item = plan.prepare(0, task)
    own = (plan.table_rows(item.distinct[0].size), plan.table_size(item.distinct[1].size))
    key = plan.GroupKey(item.law, item.task.objective, item.free, "starts", item.n_starts, True)
    theta = np.array([6.0, 6.8, 0.6, 0.34, 0.28]) + rng.normal(0, 0.1, (16, 5))
    evaluator = solvers.GridEvaluator(item.law, item.free, width=16)
    sums = []
    for rows, columns in [(1, 1), (2, 1), (1, 2), (4, 4)]:
        grp = plan.Group(key, plan.bucket_size(item.n_points), [item], (own[0] * rows, own[1] * columns))
        problems = jax.jit(lambda b, law=grp.law: programs.problems(law, b))(plan.pack(grp, grp.members))
        row = jax.jit(evaluator.lanes)(theta, np.zeros(16, np.int32), problems)
        sums.append([np.asarray(getattr(row, name)) for name in ("f", "grad", "hess")])
    for padded in sums[1:]:
        for a, b in zip(padded, sums[0], strict=True):
            assert (a == b).all()

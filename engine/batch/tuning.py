"""The engine's tuning knobs in one frozen record. The measurements behind the defaults are in
`bench/` (BENCHMARKS.md); changing a knob never changes which shapes a job's fits are computed
in beyond what it names, and never makes a result depend on timing."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How jobs are laid out on the device.

    pool_lanes: lanes of the largest pool of a point-sum program (fewer for long series, see
        `lane_points`); a pool keeps this shape for the whole job.
    lane_points: lanes x padded points of a pool at most. Each lane holds its task's points, so a
        pool's data is ~40 bytes a lane-point: at 2^18 it stays in the cache, and long series step
        faster in fewer lanes (2-core CPU, warm: Epoch's 4500-start grid on 1,024 lanes 0.62 s
        against 0.80 s on 4,096 at 2^20; 1,000 Chinchilla bootstrap resamples 0.23 s against 0.35 s;
        ScaleBench 50.9 s against 58.8 s; 2^17 and 2^19 were slower). Chinchilla's 24-point series
        keep 4,096 lanes (`pool_lanes`).
    lane_cells: lanes x table cells of a table-sum pool at most.
    tail_divisors: the smaller pool sizes (pool_lanes / d) a job's tail moves to, and that a job
        with fewer fits starts in. Pre-declared, so a job compiles at most len + 1 pool programs
        per program key.
    shrink_lane_point_steps: a tail moves to a smaller pool program that is neither compiled nor
        archived only once tails in the process have run this many lane-point-steps in larger pools
        that it would have held (~0.7 s of one-restart-a-row LM at ~40 ns a lane-point-step on the
        2-core CPU, ~0.15 s of shared-row LM; a pool compiles in ~2 s): a small job's short tail
        does not compile a second pool, a long one does not wait long. The rent is per process.
    min_lanes: no pool is smaller than this.
    steps_per_call: driver steps between two refills (finished lanes wait at most this long).
    batch_points: tasks x starts x padded points of one call of the start programs (variable
        projection, grid screening) and of the conditioning program.
    shared_points: in a raced job (`types.Race`), tasks of more padded points than this keep their
        restarts side by side in rows that share the task's data, stepped by the stacked pass
        (`solvers.evaluate.STACKED_WIDTH`), so that a checkpoint sees all of them; shorter series,
        and every series of a job without a race, run one restart a row. 2-core CPU, warm, 8
        restarts, Chinchilla law: one restart a row 2.6 / 2.4 / 2.8 / 2.7 / 2.2 s against 4.0 /
        3.6 / 4.1 / 4.0 / 3.0 s shared for 1,000 / 500 / 300 / 150 / 80 tasks of 200 / 500 / 800 /
        1,600 / 3,000 points; Epoch's 4500-start grid 1.53 against 1.77 s.
    pools_per_program: pools of the same program ladder, sharing its queue of fits. A pool's call
        runs while the host reads and refills another, so the host's work overlaps the device's
        instead of adding to it; once nothing is queued, the first pool takes the others' busy rows.
    """

    pool_lanes: int = 4096
    lane_points: int = 1 << 18
    lane_cells: int = 1 << 21
    tail_divisors: tuple[int, ...] = (8, 64)
    shrink_lane_point_steps: int = 1 << 24
    min_lanes: int = 64
    steps_per_call: int = 8
    batch_points: int = 1 << 21
    shared_points: int = 128
    pools_per_program: int = 2

    def __post_init__(self) -> None:
        for name in (
            "pool_lanes",
            "lane_points",
            "lane_cells",
            "min_lanes",
            "steps_per_call",
            "batch_points",
            "pools_per_program",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"Tuning.{name} must be >= 1, got {getattr(self, name)}")
        if sorted(self.tail_divisors) != list(self.tail_divisors) or any(d < 2 for d in self.tail_divisors):
            raise ValueError(f"Tuning.tail_divisors must be increasing and >= 2, got {self.tail_divisors}")


DEFAULT = Tuning()


def power_of_two_at_most(n: float) -> int:
    """The largest power of two <= n (at least 1)."""
    return 1 << max(int(n).bit_length() - 1, 0)


def ladder(largest: int, tuning: Tuning, minimum: int | None = None) -> tuple[int, ...]:
    """Sizes a program may use, largest first: `largest` and its declared tail sizes (at least
    `minimum`, by default `tuning.min_lanes`)."""
    minimum = tuning.min_lanes if minimum is None else minimum
    sizes = [largest] + [max(largest // d, min(minimum, largest)) for d in tuning.tail_divisors]
    return tuple(sorted(set(sizes), reverse=True))


def fitting(sizes: tuple[int, ...], needed: int) -> int:
    """The smallest size of the ladder `sizes` that holds `needed` (the largest when none does)."""
    return min((s for s in sizes if s >= needed), default=sizes[0])

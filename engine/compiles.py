"""Rent or buy: whether a smaller batch shape is worth its compile.

Dropping finished lanes from a batch (compaction) makes every later step cheaper, but a batch shape
that has not been compiled yet costs a compile first: ~0.85 s for an `advance` program on the 2-core
CPU, more than the whole solve of a small batch. A cold bootstrap study of the Hitchhiker grid
compiled ~7 `advance` shapes per chunk and spent most of its time compiling them.

The runner asks `Ledger.worth` before it compacts. A shape already compiled in this process is
free. A new one is bought once the steps its group would have saved so far (the rent paid by
declining) plus what it should save in the current batch reach what a compile has been measured to
cost. This is the ski-rental rule: it spends at most about twice what the better of never and always
compiling would, without knowing how long the job runs. Compile costs are measured, not assumed, so
where compiles are cheap (programs reloaded from the persistent cache) compaction is eager again.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any

import jax

# Seconds a compile costs until one has been measured (2-core CPU: `advance` 0.84 s and `gather`
# 0.14 s on average over a cold Hitchhiker bootstrap study).
DEFAULT_COMPILE_SECONDS = {"advance": 0.85, "gather": 0.15}
# Weight of the newest measurement in the running mean of compile seconds.
MEASURE_WEIGHT = 0.25


def shapes(tree: Any) -> tuple[tuple[int, ...], ...]:
    """The shapes of a pytree's leaves (what a jitted program is compiled for, dtypes aside)."""
    return tuple(tuple(leaf.shape) for leaf in jax.tree.leaves(tree))


class Ledger:
    """Which program shapes this process has compiled, what a compile costs, and the rent each group
    of batches has paid by declining compactions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Forget every compiled shape (the programs were dropped) and every rent paid."""
        with self._lock:
            self.compiled: set[Hashable] = set()
            self.seconds: dict[str, float] = dict(DEFAULT_COMPILE_SECONDS)
            self.rent: defaultdict[Hashable, float] = defaultdict(float)

    def known(self, key: Hashable) -> bool:
        return key in self.compiled

    def timed(
        self, kind: str, key: Hashable, run: Callable[..., Any], *args: Any, compute_seconds: float = 0.0
    ) -> tuple[Any, float]:
        """(run(*args), seconds it took). When `key` is a new shape, the seconds beyond
        `compute_seconds` (the expected run time) are taken as its compile's cost. `run` must block
        until its result is computed."""
        new = key not in self.compiled
        started = time.perf_counter()
        out = run(*args)
        elapsed = time.perf_counter() - started
        if new:
            with self._lock:
                self.compiled.add(key)
                measured = max(elapsed - compute_seconds, 0.0)
                self.seconds[kind] += MEASURE_WEIGHT * (measured - self.seconds[kind])
        return out, elapsed

    def worth(
        self,
        group: Hashable,
        needed: dict[Hashable, str],
        saved_per_step: float,
        steps_left: float,
        steps_next: float,
    ) -> bool:
        """Whether to move to a batch shape that needs the programs `needed` ({key: kind}) and saves
        `saved_per_step` seconds a step: yes when they are all compiled, or when the rent `group` has
        paid plus `saved_per_step` x `steps_left` (this batch's expected remaining steps) covers
        compiling the new ones. Otherwise the rent grows by what the next `steps_next` steps lose."""
        with self._lock:
            cost = sum(self.seconds[kind] for key, kind in needed.items() if key not in self.compiled)
            if cost == 0.0:
                return True
            if saved_per_step <= 0.0:
                return False
            if self.rent[group] + saved_per_step * steps_left >= cost:
                self.rent[group] = 0.0
                return True
            self.rent[group] += saved_per_step * steps_next
            return False


LEDGER = Ledger()

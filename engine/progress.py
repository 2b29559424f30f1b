"""A one-line progress bar on stderr for long batched jobs: fits done, fits/s and ETA."""

from __future__ import annotations

import sys
import time


class Progress:
    """`update(n)` after n more fits; `close()` ends the line. Silent unless `enabled`."""

    def __init__(self, total: int, enabled: bool | None = None, label: str = "fits", stream=None):
        self.stream = stream or sys.stderr
        self.total = total
        self.label = label
        # Auto: only on a terminal, and only for jobs big enough to be worth watching.
        self.enabled = (self.stream.isatty() and total >= 100) if enabled is None else enabled
        self.done = 0
        self.start = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r[{bar}] {self.done}/{self.total} {self.label}  {rate:,.0f} {self.label}/s  ETA {eta:,.1f} s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            self.stream.write(f"\r{self.done}/{self.total} {self.label} in {elapsed:.2f} s{' ' * 40}\n")
            self.stream.flush()

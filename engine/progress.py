"""Progress of long batched jobs on stderr: fits done, fits/s and ETA. On a terminal a one-line bar;
elsewhere (a log file, CI, a pipe) a plain line at most every `LOG_EVERY_S` seconds and one at the end."""

from __future__ import annotations

import sys
import time

LOG_EVERY_S = 10.0
MIN_TOTAL = 100  # smaller jobs finish before progress is worth showing


class Progress:
    """`update(n)` after n more fits; `close()` ends the line. Silent unless `enabled` (auto: jobs of
    at least `MIN_TOTAL` fits)."""

    def __init__(self, total: int, enabled: bool | None = None, label: str = "fits", stream=None):
        self.stream = stream or sys.stderr
        self.total = total
        self.label = label
        self.enabled = total >= MIN_TOTAL if enabled is None else enabled
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.start = time.perf_counter()
        self.logged = self.start

    def _figures(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        return f"{self.done}/{self.total} {self.label}  {rate:,.0f} {self.label}/s  ETA {eta:,.1f} s"

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.terminal:
            filled = int(30 * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self._figures()}")
        elif n and (self.done == n or time.perf_counter() - self.logged >= LOG_EVERY_S):  # the first, then throttled
            self.logged = time.perf_counter()
            self.stream.write(f"progress: {self._figures()}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            text = f"{self.done}/{self.total} {self.label} in {elapsed:.2f} s ({rate:,.0f} {self.label}/s)"
            self.stream.write(f"\r{text}{' ' * 40}\n" if self.terminal else f"progress: {text}\n")
            self.stream.flush()

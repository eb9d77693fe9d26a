"""A progress bar for long commands: drawn on stderr when it is a terminal, silent when piped."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, stream=None, width: int = 30):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.monotonic()
        self.last = -1.0

    def update(self, fraction: float, note: str = "") -> None:
        if not self.live:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction < 1.0 and fraction - self.last < 0.01:
            return
        self.last = fraction
        n = int(fraction * self.width)
        bar = "#" * n + "-" * (self.width - n)
        self.stream.write(f"\r{self.label} [{bar}] {fraction * 100:5.1f}% {time.monotonic() - self.t0:5.1f}s {note}")
        self.stream.flush()

    def done(self, note: str = "") -> None:
        if self.live:
            self.update(1.0, note)
            self.stream.write("\n")
            self.stream.flush()

"""The progress bar of long commands (flash, simulate): one bar on stderr, drawn only when it is a terminal,
silent when piped. The work is planned as parts with weights (e.g. bytes); a job of one part needs no plan."""
from __future__ import annotations

import sys
import time


class Progress:
    """`label`: the text before the bar (update() may change it), padded and cut to `label_width` characters
    (None: as it is). `fill`: the bar's empty cells. `timer`: the seconds since the start after the percentage."""

    def __init__(self, label: str = "", stream=None, enabled: bool | None = None, width: int = 30,
                 label_width: int | None = 28, fill: str = ".", timer: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.width, self.label_width, self.fill, self.timer = width, label_width, fill, timer
        self._parts: dict[str, float] = {"": 1.0}  # unplanned: one part, the whole job
        self._done: dict[str, float] = {"": 0.0}
        self._label = label
        self._last = ""
        self._t0 = time.monotonic()

    def plan(self, **weights: float) -> None:
        self._parts = {k: float(max(v, 1)) for k, v in weights.items()}
        self._done = {k: 0.0 for k in weights}

    def fraction(self) -> float:
        total = sum(self._parts.values()) or 1.0
        return sum(self._done[k] * w for k, w in self._parts.items()) / total

    def update(self, part: str, frac: float, label: str | None = None) -> None:
        """Part `part` is `frac` done (a part never goes back)."""
        if part in self._done:
            self._done[part] = min(1.0, max(self._done[part], frac))
        if label is not None:
            self._label = label
        self._draw()

    def set(self, frac: float) -> None:
        """An unplanned job is `frac` done."""
        self.update("", frac)

    def _line(self) -> str:
        f = self.fraction()
        n = int(f * self.width)
        label = self._label if self.label_width is None else f"{self._label[:self.label_width]:<{self.label_width}}"
        line = f"\r{label} [{'#' * n}{self.fill * (self.width - n)}] {f * 100:5.1f}%"
        if self.timer:
            line += f" {time.monotonic() - self._t0:5.1f}s "
        return line

    def _draw(self) -> None:
        if not self.enabled:
            return
        line = self._line()
        if line != self._last:
            self.stream.write(line)
            self.stream.flush()
            self._last = line

    def finish(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
            self._last = ""

"""The cell: Li-ion open-circuit voltage against state of charge (parts.json li_ion_ocv), and what is usable."""
from __future__ import annotations

from citynode.energy import model

CUTOFF_V = 3.3  # below this the board's 3.3 V LDO (about 0.25 V dropout) no longer holds the ESP32's 3.0 V minimum


def ocv_points() -> list[tuple[float, float]]:
    """(state of charge 0..1, volts), ascending in charge."""
    pts = model.data()["li_ion_ocv"]["points"]
    return sorted((p[0] / 100.0, float(p[1])) for p in pts)


def volts(soc: float) -> float:
    """Open-circuit voltage at a state of charge (0..1), linear between the curve's points."""
    pts = ocv_points()
    soc = min(max(soc, pts[0][0]), pts[-1][0])
    for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
        if s0 <= soc <= s1:
            return v0 + (v1 - v0) * (soc - s0) / (s1 - s0) if s1 > s0 else v1
    return pts[-1][1]


def soc_at(v: float) -> float:
    """The state of charge at which the open-circuit voltage falls to v."""
    pts = ocv_points()
    if v <= pts[0][1]:
        return pts[0][0]
    for (s0, v0), (s1, v1) in zip(pts, pts[1:]):
        if v0 <= v <= v1:
            return s0 + (s1 - s0) * (v - v0) / (v1 - v0) if v1 > v0 else s1
    return pts[-1][0]


def usable_mah(capacity_mah: float, cutoff_v: float = CUTOFF_V) -> float:
    """The charge the node can draw before the cell's voltage reaches the cut-off."""
    return capacity_mah * (1.0 - soc_at(cutoff_v))


class Cell:
    """A cell being drawn from: its voltage follows the curve as charge leaves it (the battery channel's twin)."""

    def __init__(self, capacity_mah: float, drawn_mah=None, start_soc: float = 1.0):
        self.capacity_mah = capacity_mah
        self.drawn_mah = drawn_mah  # fn() -> mAh drawn so far (the meter's total)
        self.start_soc = start_soc

    def millivolts(self, ms=None) -> int:
        drawn = self.drawn_mah() if self.drawn_mah is not None else 0.0
        return int(round(1000 * volts(self.start_soc - drawn / self.capacity_mah)))

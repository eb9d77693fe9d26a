"""The simulator's meter: time per component and power state, as the twins report their changes, and the charge."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from citynode.energy import model

_current_ma = lru_cache(maxsize=None)(model.current_ma)  # the figures are constants: each state is looked up once


def _order(key):
    return key[0], key[1], str(key[2])


class Meter:
    """Integrates time in each power state per component over the simulation's clock (`now_us()`).

    A twin is watched (`watch`): it reports its own changes through hwsim.power.Powered. A component that is no
    chip's twin (the ESP32 as the harness runs it, the board's quiescent draw) is `add`ed and `set` by the
    harness. `extra` books time in a state that virtual time does not contain (MicroPython's boot after a wake)."""

    def __init__(self, now_us):
        self.now_us = now_us
        self.comps: dict[str, dict] = {}
        self.time_us: dict[tuple, int] = {}  # (component, state, detail) -> microseconds
        self._names: dict[int, str] = {}  # id(twin) -> component
        self.events: dict[tuple, int] = {}  # (component, state) -> how many times extra() booked it

    def add(self, name: str, part: str, state: str, detail=None) -> None:
        self.comps[name] = {"part": part, "state": state, "detail": detail, "since": self.now_us(), "until": 0,
                            "then": None}

    def watch(self, name: str, twin, part: str) -> None:
        """Meter a twin (hwsim.power.Powered) from its present state on."""
        self.add(name, part, twin.power_state, twin.power_detail)
        self._names[id(twin)] = name
        twin.meter = self

    def change(self, twin, state, detail=None, for_us=0, then=None) -> None:
        """A watched twin's report (called by Powered._power)."""
        self.set(self._names[id(twin)], state, detail, for_us, then)

    def set(self, name: str, state: str, detail=None, for_us: int = 0, then=None) -> None:
        c = self.comps[name]
        now = self.now_us()
        self._accrue(name, c, now)
        c.update(state=state, detail=detail, since=now, until=now + for_us if for_us else 0, then=then)

    def extra(self, name: str, state: str, us: int, detail=None) -> None:
        key = (name, state, detail)
        self.time_us[key] = self.time_us.get(key, 0) + int(us)
        self.events[(name, state)] = self.events.get((name, state), 0) + 1

    def _book(self, name, state, detail, us):
        if us > 0:
            key = (name, state, detail)
            self.time_us[key] = self.time_us.get(key, 0) + us

    def _accrue(self, name, c, now):
        if c["until"] and c["until"] <= now:  # a state that ended by itself: split the time there
            self._book(name, c["state"], c["detail"], c["until"] - c["since"])
            c.update(state=c["then"], detail=None, since=c["until"], until=0, then=None)
        self._book(name, c["state"], c["detail"], now - c["since"])
        c["since"] = now

    def states(self) -> dict[str, tuple]:
        """Each component's (part, state, detail) now."""
        now = self.now_us()
        out = {}
        for name, c in self.comps.items():
            if c["until"] and c["until"] <= now:
                out[name] = (c["part"], c["then"], None)
            else:
                out[name] = (c["part"], c["state"], c["detail"])
        return out

    def now_ma(self) -> float:
        """What the node draws at this moment, from every component's present state."""
        return sum(_current_ma(p, s, d) for p, s, d in self.states().values())

    def usage(self) -> Usage:
        """Time per component and state up to now, with the current and charge the model gives each."""
        return Usage([Row(name, part, state, detail, us / 1e6, ma, ma * us / 3.6e9)
                      for name, part, state, detail, us, ma in self._terms()])

    def charge_mah(self) -> float:
        """The charge drawn up to now: usage().total_mah(), the same sum in the same order, without building the
        table (a battery twin asks at every ADC read)."""
        total = 0
        for _, _, _, _, us, ma in self._terms():
            total += ma * us / 3.6e9
        return total

    def _terms(self):
        """(component, part, state, detail, us, mA) per component and state up to now, in the table's order."""
        now = self.now_us()
        for name, c in self.comps.items():
            self._accrue(name, c, now)
        for key in sorted(self.time_us, key=_order):
            name, state, detail = key
            part = self.comps[name]["part"]
            yield name, part, state, detail, self.time_us[key], _current_ma(part, state, detail)


@dataclass
class Row:
    component: str
    part: str
    state: str
    detail: object
    seconds: float
    ma: float
    mah: float


@dataclass
class Usage:
    rows: list = field(default_factory=list)

    def total_mah(self) -> float:
        return sum(r.mah for r in self.rows)

    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.rows:
            out[r.component] = out.get(r.component, 0.0) + r.mah
        return out

"""The channel registry as seen by host tools: typed rows derived from the firmware's own table."""
from __future__ import annotations

from dataclasses import dataclass

from cnode import channels as _fw

VERSION = _fw.VERSION
FLAG_NAMES = _fw.FLAG_NAMES
REBOOT_NAMES = _fw.REBOOT_NAMES
EPOCH_2000 = 946684800  # Unix seconds at 2000-01-01T00:00:00Z, the node's (and MicroPython's) epoch


@dataclass(frozen=True)
class Channel:
    id: int
    name: str
    unit: str
    exp: int  # resolution = 10**exp
    lo: int  # range as integers at the resolution
    hi: int
    ref: int

    @property
    def resolution(self) -> float:
        return 10.0 ** self.exp

    @property
    def decimals(self) -> int:
        return max(0, -self.exp)

    def to_raw(self, value: float) -> int:
        """Value in the unit -> integer at the channel's resolution (nearest step)."""
        return int(round(value * 10 ** -self.exp)) if self.exp < 0 else int(round(value / 10 ** self.exp))

    def from_raw(self, raw: int) -> float | int:
        """Integer at the resolution -> value in the unit (int when the resolution is 1 or coarser)."""
        if self.exp >= 0:
            return raw * 10 ** self.exp
        # an exact integer quotient rounds once, to the double nearest the decimal value (857 / 100 == 8.57)
        return raw / 10 ** -self.exp

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "unit": self.unit,
            "resolution": self.from_raw(1),
            "min": self.from_raw(self.lo),
            "max": self.from_raw(self.hi),
            "ref": self.from_raw(self.ref),
        }


CHANNELS: tuple[Channel, ...] = tuple(Channel(*row) for row in _fw.CHANNELS)
BY_ID: dict[int, Channel] = {c.id: c for c in CHANNELS}
BY_NAME: dict[str, Channel] = {c.name: c for c in CHANNELS}


def channel(name: str) -> Channel:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown channel {name!r} (see `citynode channels`)") from None


def flag_names(bits: int) -> list[str]:
    names = [n for i, n in enumerate(FLAG_NAMES) if bits & (1 << i)]
    extra = bits >> len(FLAG_NAMES)
    if extra:
        names.append(f"flag_0x{extra << len(FLAG_NAMES):x}")
    return names


def flag_bits(names) -> int:
    bits = 0
    for n in names:
        if n not in FLAG_NAMES:
            raise ValueError(f"unknown quality flag {n!r}")
        bits |= 1 << FLAG_NAMES.index(n)
    return bits

"""The current model: mA per part and state from parts.json (each figure with its source), and board quiescent."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).with_name("parts.json")


class ModelError(ValueError):
    """A part or state the data file does not have: a twin reported a state nobody has a figure for."""


@lru_cache(maxsize=1)
def data() -> dict:
    return json.loads(DATA.read_text())


def part(name: str) -> dict:
    p = data()["parts"].get(name)
    if p is None:
        raise ModelError(f"no current figures for part {name!r} in {DATA.name}")
    return p


def board(name: str) -> dict:
    """The board's energy facts (quiescent items, published deep-sleep figures, its usual cell)."""
    boards = data()["boards"]
    b = boards.get(name)
    if b is None:
        raise ModelError(f"no energy facts for board {name!r} in {DATA.name}")
    seen = {name}
    while "same_as" in b:  # a board wired like another (the virtual board)
        if b["same_as"] in seen:
            raise ModelError(f"board {name!r}: same_as loops")
        seen.add(b["same_as"])
        b = boards[b["same_as"]]
    return b


def quiescent_ma(board_name: str) -> float:
    """The board's own draw whenever it has power: regulator, USB-UART bridge, charger, divider, LEDs."""
    return sum(item["mA"] for item in board(board_name).get("quiescent", ()))


def _tx_ma(table: dict, detail: str | None, where: str) -> float:
    """TX current from the datasheet's rows for the PA pin: the row for that power, else interpolated linearly
    in dBm between the two rows around it; below the lowest row, that row's current (an upper bound: the
    datasheets list no lower power for the pin); above the highest, the highest row's."""
    pin, _, dbm_s = (detail or "").partition(":")
    rows = table.get(pin) if not pin.startswith("_") else None
    if rows is None:
        raise ModelError(f"{where}: no TX rows for PA {pin!r} (have {sorted(k for k in table if k[0] != '_')})")
    dbm = float(dbm_s)
    pts = sorted((float(k), v["mA"]) for k, v in rows.items())
    if dbm <= pts[0][0]:
        return pts[0][1]
    if dbm >= pts[-1][0]:
        return pts[-1][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= dbm <= x1:
            return y0 + (y1 - y0) * (dbm - x0) / (x1 - x0)
    raise AssertionError("unreachable")


def current_ma(part_name: str, state: str, detail: str | None = None) -> float:
    """mA that `part_name` draws in `state` ("off": nothing). Board quiescent is part "board:<name>", state "on"."""
    if state == "off":
        return 0.0
    if part_name.startswith("board:"):
        return quiescent_ma(part_name[6:])
    states = part(part_name)["states"]
    s = states.get(state)
    if s is None:
        raise ModelError(f"part {part_name!r} has no figure for state {state!r} (have {sorted(states)})")
    if state == "tx" and "mA" not in s:
        return _tx_ma(s, detail, part_name)
    if "mA" not in s and detail is not None and detail in s:  # a state whose figure depends on a mode (LDO/DCDC)
        return s[detail]["mA"]
    if "mA" not in s:
        raise ModelError(f"part {part_name!r} state {state!r}: no mA figure for {detail!r}")
    return s["mA"]


def state_ms(part_name: str, state: str) -> float | None:
    """The duration a part's data gives for a state that is a fixed event (the ESP32's boot), or None."""
    return part(part_name)["states"].get(state, {}).get("ms")


def source(part_name: str, state: str) -> str:
    s = part(part_name)["states"].get(state, {})
    return s.get("source", "")


def lowest(part_name: str) -> tuple[str, float]:
    """The part's lowest-drawing state and its mA: what it should be in while the node sleeps."""
    if part_name.startswith("board:"):
        return "on", quiescent_ma(part_name[6:])
    best = None
    for st, v in part(part_name)["states"].items():
        if st in ("boot", "tx") or "mA" not in v:
            continue
        if best is None or v["mA"] < best[1]:
            best = (st, v["mA"])
    if best is None:
        raise ModelError(f"part {part_name!r}: no state with a figure")
    return best

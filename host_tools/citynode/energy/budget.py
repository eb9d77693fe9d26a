"""`citynode budget` as a library: a board's charge per component and state, battery life, and the reverse question."""
from __future__ import annotations

import math

from citynode.energy import battery, model
from citynode.energy.run import BudgetError, Run, run

SIM_DAYS = 1.0  # a day of virtual time: every hour of the day's traffic, the daily time sync, a few hundred wakes
_FLOOR_STATES = {("cpu", "deep_sleep"), ("board", "on"), ("pmic", "on")}  # drawn all day, whatever the interval


def cell_mah(board: dict) -> float:
    """The board file's cell (battery.cell_mah), else the cell the energy data gives for the board."""
    mah = (board.get("battery") or {}).get("cell_mah")
    if mah is None:
        mah = model.board(board["name"]).get("cell", {}).get("mAh")
    if mah is None:
        raise BudgetError(f"board {board['name']}: no cell given; use --battery MAH")
    return float(mah)


def _setting(component: str, state: str) -> str:
    """Which setting (or hardware) a row's charge answers to."""
    if (component, state) in _FLOOR_STATES or state in ("sleep", "power_down", "backup", "idle") and component not in (
            "cpu",):
        return "hardware: the board's and chips' sleep draw (no setting changes it; a different board does)"
    if component == "cpu" and state == "boot":
        return "wakes per day (--interval): every wake boots MicroPython"
    if component == "cpu":
        return "time awake per wake (sensor warm-up, receive windows) x wakes per day (--interval)"
    if component == "radio" and state == "tx":
        return "airtime: data rate (--dr) and frames per day (--interval)"
    if component == "radio":
        return "radio awake per wake (receive windows, standby while sensors warm up) x wakes (--interval)"
    return f"{component} on per wake x wakes per day (--interval, --sensors)"


def summarise(r: Run, capacity_mah: float) -> dict:
    """The report: rows per component and state per day, shares, the total, battery days, the dominant row."""
    total = r.usage.total_mah()
    per_day = total / r.days
    rows = []
    for x in r.usage.rows:
        rows.append({"component": x.component, "part": x.part, "state": x.state, "detail": x.detail,
                     "seconds_per_day": round(x.seconds / r.days, 3), "ma": round(x.ma, 6),
                     "mah_per_day": round(x.mah / r.days, 4), "share": round(x.mah / total, 4) if total else 0.0})
    usable = battery.usable_mah(capacity_mah)
    top = max(r.usage.rows, key=lambda x: x.mah)
    comps = {k: round(v / r.days, 4) for k, v in sorted(r.usage.by_component().items(), key=lambda kv: -kv[1])}
    return {"board": r.board, "interval_s": r.interval_s, "radio": r.radio, "days_simulated": r.days,
            "wakes_per_day": round(r.wakes / r.days, 1), "uplinks_per_day": round(r.uplinks / r.days, 1),
            "battery_mah": capacity_mah, "usable_mah": round(usable, 1), "cutoff_v": battery.CUTOFF_V,
            "mah_per_day": round(per_day, 4), "average_ma": round(per_day / 24, 5),
            "battery_days": round(usable / per_day, 1) if per_day > 0 else math.inf,
            "components": comps, "rows": rows,
            "dominant": {"component": top.component, "state": top.state, "share": round(top.mah / total, 3),
                         "setting": _setting(top.component, top.state)},
            "notes": list(r.notes)}


def budget(board: dict, interval_s=None, dr=None, sensors=None, battery_mah=None, lib_dir=None,
           days: float = SIM_DAYS) -> dict:
    r = run(board, days=days, interval_s=interval_s, dr=dr, sensors=sensors, lib_dir=lib_dir)
    return summarise(r, battery_mah if battery_mah is not None else cell_mah(board))


def _split(rep: dict) -> tuple[float, float]:
    """(mAh per day drawn whatever the interval, mAh per wake): the reverse question's two coefficients."""
    floor = sum(x["mah_per_day"] for x in rep["rows"] if (x["component"], x["state"]) in _FLOOR_STATES)
    per_wake = (rep["mah_per_day"] - floor) / rep["wakes_per_day"]
    return floor, per_wake


def shortest_interval(board: dict, life_days: float, dr=None, sensors=None, battery_mah=None, lib_dir=None,
                      days: float = SIM_DAYS) -> dict:
    """The shortest sampling interval (whole seconds, 10..86400) at which the model reaches `life_days` on the
    battery: the day at the board's interval splits the charge into a floor and a cost per wake, that gives the
    interval, and a second day at that interval checks it (stepping out 10 % at a time while it falls short)."""
    cap = battery_mah if battery_mah is not None else cell_mah(board)
    first = budget(board, None, dr, sensors, cap, lib_dir, days)
    usable = first["usable_mah"]
    floor, per_wake = _split(first)
    allowed = usable / life_days
    if floor >= allowed:
        raise BudgetError(f"{life_days:g} days cannot be reached on {cap:g} mAh: the board's sleep draw alone "
                          f"({floor:.2f} mAh/day) gives {usable / floor:.0f} days")
    interval = max(10, min(86400, math.ceil(86400 * per_wake / (allowed - floor))))
    for _ in range(8):
        rep = budget(board, interval, dr, sensors, cap, lib_dir, days)
        if rep["battery_days"] >= life_days or interval >= 86400:
            break
        interval = min(86400, math.ceil(interval * 1.1))
    rep["life_days"] = life_days
    rep["reached"] = rep["battery_days"] >= life_days
    return rep

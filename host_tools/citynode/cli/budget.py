"""`citynode budget`: how long a board runs on its battery, from a metered day of its firmware on twins."""
from __future__ import annotations

import json
import sys

from citynode.cli import add_command
from citynode.errors import CitynodeError


def register(sub) -> None:
    p = add_command(sub, "budget", cmd_budget, "How long a node runs on its battery: a day of its firmware on "
                    "the board's twins, metered per component and state.",
                    "citynode budget --board heltec-wifi-lora-32-v3 --interval 300 --sensors bme280 --battery 6800")
    p.add_argument("--board", required=True, help="a name from `citynode boards`")
    p.add_argument("--interval", type=int, help="sampling interval in seconds (default: the board's setting, 300)")
    p.add_argument("--dr", type=int, choices=range(6), metavar="0..5", help="EU868 data rate, ADR off (default: ADR)")
    p.add_argument("--sensors", nargs="+", metavar="NAME", help="the sensors fitted, as board files name them "
                   "(bme280 sht4x scd4x sds011 pms5003 sps30 gps_nmea qmc5883l vl53l1x); default: the board's own")
    p.add_argument("--battery", type=float, metavar="MAH", help="cell capacity in mAh (default: the board's cell)")
    p.add_argument("--life", type=float, metavar="DAYS", help="the reverse question: the shortest interval that "
                   "still runs this many days on the battery")
    p.add_argument("--mip-index", metavar="URL|DIR", help="where micropython-lib's radio driver comes from (default: "
                   "the local cache that `citynode flash` fills); without it the LoRa chip is the API-level modem")
    p.add_argument("--json", action="store_true", help="the report as JSON (battery_days, rows, dominant)")


def driver_sources(board, index) -> tuple[str | None, str]:
    """A folder with micropython-lib's lora package as sources (for the chip's twin in this process), or None
    and why: from `index` if given, else from the cache only (the budget must answer in seconds, offline)."""
    from citynode.device.mip import MipError, fetch_sources, lib_folder, packages_for

    if not packages_for(board):
        return None, ""
    # both chip packages: CPython's ImportError for a missing one is not the lower-case message `lora` skips
    pk = ("lora", "lora-sync", "lora-sx127x", "lora-sx126x")
    try:
        src = fetch_sources(pk, index, offline=index is None)
    except MipError as e:
        return None, str(e)
    return lib_folder(sorted(src.items()), "citynode-lora-src"), ""


def cmd_budget(args) -> int:
    from citynode.device.boards import get_board
    from citynode.energy.budget import budget, shortest_interval
    from citynode.energy.model import ModelError
    from citynode.energy.run import BudgetError

    if args.interval is not None and not 10 <= args.interval <= 86400:
        raise CitynodeError("--interval must be 10..86400 seconds")
    if args.battery is not None and args.battery <= 0:
        raise CitynodeError("--battery must be a positive number of mAh")
    if args.life is not None and args.life <= 0:
        raise CitynodeError("--life must be a positive number of days")
    b = get_board(args.board)
    board = b.node_config()
    lib, why = driver_sources(b, args.mip_index)
    try:
        if args.life is not None:
            rep = shortest_interval(board, args.life, args.dr, args.sensors, args.battery, lib)
        else:
            rep = budget(board, args.interval, args.dr, args.sensors, args.battery, lib)
    except (BudgetError, ModelError) as e:
        raise CitynodeError(str(e)) from None
    if why:
        rep["notes"].append(f"radio driver: {why}")
    if args.json:
        json.dump(rep, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_report(rep, sys.stdout)
    return 0


def print_report(rep: dict, out) -> None:
    out.write(f"board {rep['board']}, interval {rep['interval_s']} s, {rep['wakes_per_day']:g} wakes and "
              f"{rep['uplinks_per_day']:g} uplinks per day (radio: {rep['radio']})\n\n")
    out.write(f"{'component':<10}{'state':<13}{'detail':<13}{'s/day':>10}{'mA':>11}{'mAh/day':>10}{'share':>7}\n")
    for x in sorted(rep["rows"], key=lambda x: -x["mah_per_day"]):
        out.write(f"{x['component']:<10}{x['state']:<13}{str(x['detail'] or ''):<13}{x['seconds_per_day']:>10.1f}"
                  f"{x['ma']:>11.4f}{x['mah_per_day']:>10.3f}{100 * x['share']:>6.1f}%\n")
    out.write(f"{'total':<36}{86400:>10}{rep['average_ma']:>11.4f}{rep['mah_per_day']:>10.3f}\n\n")
    out.write(f"battery {rep['battery_mah']:g} mAh ({rep['usable_mah']:g} mAh above {rep['cutoff_v']} V): "
              f"{rep['battery_days']:g} days ({rep['battery_days'] / 365.25:.2f} years)\n")
    if "life_days" in rep:
        out.write(f"for {rep['life_days']:g} days: interval {rep['interval_s']} s "
                  f"({'reached' if rep['reached'] else 'NOT reached even at 86400 s'})\n")
    d = rep["dominant"]
    out.write(f"dominant: {d['component']} {d['state']} ({100 * d['share']:.0f} %): {d['setting']}\n")
    for n in rep["notes"]:
        out.write(f"note: {n}\n")

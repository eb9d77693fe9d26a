"""`citynode simulate`: a fleet of nodes in virtual time, decoded and summarised."""
from __future__ import annotations

import glob
import json
import os
import sys

from citynode.cli import add_command
from citynode.sim.datasets import Held, read_counter_csv, read_sensor_community, sensor_type
from citynode.errors import CitynodeError
from citynode.progress import Progress


def register(sub) -> None:
    p = add_command(sub, "simulate", cmd_simulate, "Run a fleet of nodes (firmware, sensors, radio, network) "
                    "in virtual time and report what arrived.",
                    "citynode simulate --nodes 50 --days 7 --report report.json")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--days", type=float, default=1.0)
    p.add_argument("--replay", nargs="+", metavar="FILE", help="drive the sensors from recorded series "
                   "(sensor.community *_sds011_*/*_bme280_*/*_dht22_* CSVs; counter CSVs time,<channel>)")
    p.add_argument("--runtime", choices=("cpython", "micropython"), default="cpython")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--interval", type=int, default=300, help="sampling interval in seconds")
    p.add_argument("--loss", type=float, default=0.0, help="probability that an uplink is lost on air")
    p.add_argument("--confirmed", action="store_true",
                   help="confirmed uplinks: samples leave the node's queue only when the network acknowledged them")
    p.add_argument("--power-cuts", type=int, default=0, help="cut power at N random moments")
    p.add_argument("--hangs", type=int, default=0,
                   help="make nodes hang at N random moments (--runtime micropython): the watchdog resets them")
    p.add_argument("--deep-sleep", action="store_true", help="reboot through deep sleep after every cycle")
    p.add_argument("--heap", help="MicroPython heap per node with --runtime micropython (default 192K; 256K when "
                   "the radio chip's twin and its driver share the node's process)")
    p.add_argument("--board", help="every node is this board (a name from `citynode boards`); with --runtime "
                   "micropython its LoRa chip is a register-level twin under micropython-lib's driver (default: "
                   "the virtual board, an SX1276)")
    p.add_argument("--api-radio", action="store_true", help="with --runtime micropython: the API-level modem instead "
                   "of the chip's twin under its driver (the firmware's own heap, without the twin and the double)")
    p.add_argument("--mip-index", metavar="URL|DIR", help="where the radio drivers come from (micropython-lib's mip "
                   "index, or an offline copy; default the public index, then the local cache)")
    p.add_argument("--battery", type=float, metavar="MAH", help="each node's cell in mAh, for battery_days in the "
                   "report and the battery channel's discharge (default: the board's cell; 3400 for the virtual board)")
    p.add_argument("--out", help="write the samples the network decoded (JSON lines)")
    p.add_argument("--frames", help="write every LoRaWAN PHY frame with its keys (JSON lines)")
    p.add_argument("--report", help="write the report (JSON)")


def _held_channels(rows) -> dict[str, Held]:
    """One sample-and-hold series per channel, from the rows that carry that channel (a row without it does not
    end the value recorded before)."""
    per: dict[str, list] = {}
    for t, vals in rows:
        for ch, v in vals.items():
            per.setdefault(ch, []).append((t, {ch: v}))
    return {ch: Held(r, max_age=10 ** 9) for ch, r in per.items()}


def replay_series(paths: list[str], days: float | None = None):
    """(start unix, env series, pm series, counter) from recorded files. Series are functions of ms since the
    start (None: nothing recorded for them, the simulation's synthetic series apply); counter is (channel, [count
    per hour from the start]) from a counter CSV, or None. The start is the first second at which every recorded
    channel has a value, so that a replayed channel only ever gives what was recorded (held from its last row);
    only channels the recording lacks (pressure beside a DHT22) come from the synthetic series. With `days`, a
    run that outlasts a recording is said on stderr (its last values are held)."""
    files = []
    for p in paths:
        found = sorted(glob.glob(p)) or [p]
        files.extend(found)
    by_kind: dict[str, list[str]] = {}
    for f in files:
        try:
            kind = sensor_type(f)
        except ValueError:
            kind = "counter"
        by_kind.setdefault(kind, []).append(f)
    try:
        env_rows = read_sensor_community(by_kind.get("bme280", []) + by_kind.get("dht22", []))
        pm_rows = read_sensor_community(by_kind.get("sds011", []))
        counter_rows = [r for f in by_kind.get("counter", []) for r in read_counter_csv(f)]
    except (OSError, ValueError, KeyError) as e:
        raise CitynodeError(f"cannot read replay data: {e}") from None
    counter_rows.sort(key=lambda r: r[0])
    env = _held_channels(env_rows)
    pm = _held_channels(pm_rows)
    spans = {ch: (h.t[0], h.t[-1]) for ch, h in (*env.items(), *pm.items())}
    if counter_rows:
        spans[next(iter(counter_rows[0][1]))] = (counter_rows[0][0], counter_rows[-1][0])
    if not spans:
        raise CitynodeError("no rows in the replay files")
    start = max(first for first, _ in spans.values())
    end = min(last for _, last in spans.values())
    if end < start:
        raise CitynodeError("the replay files do not overlap in time: " + ", ".join(
            f"{ch} {first}..{last}" for ch, (first, last) in sorted(spans.items())) + " (unix s)")
    if days is not None and start + days * 86400 > end:
        print(f"citynode simulate: the recordings cover {(end - start) / 3600:.1f} h from their common start; "
              "after that the last recorded values are held", file=sys.stderr)
    from citynode.sim.hwsim.twin_bme280 import diurnal

    def env_series(ms):
        v = diurnal(ms)  # only for channels the recording lacks: every recorded one is replaced below
        t = start + int(ms // 1000)
        for ch, h in env.items():
            v[ch] = h.at(t)[ch]
        return v

    def pm_series(ms):
        t = start + int(ms // 1000)
        return {ch: h.at(t)[ch] for ch, h in pm.items()}

    counter = None
    if counter_rows:
        channel = next(iter(counter_rows[0][1]))
        if channel not in ("pedestrians", "bikes", "vehicles"):
            raise CitynodeError(f"counter CSV channel {channel!r}: expected pedestrians, bikes or vehicles")
        hours: dict[int, float] = {}
        for t, v in counter_rows:
            h = (t - start) // 3600
            if h >= 0:  # hours before the common start are not replayed
                hours[h] = hours.get(h, 0) + v[channel]
        counter = (channel, [int(hours.get(h, 0)) for h in range(max(hours) + 1)] if hours else [])
    return start, (env_series if env else None), (pm_series if pm else None), counter


def radio_lib(board, index) -> str | None:
    """A folder with micropython-lib's `lora` package for the board's chip (verified against the lock and
    compiled, as `citynode flash` installs it), or None (said on stderr) when the drivers cannot be had: the
    simulation then runs the API-level modem."""
    from citynode.device.mip import MipError, driver_files, lib_folder

    try:
        files = driver_files(board, index)
    except MipError as e:
        print(f"citynode simulate: no radio driver ({e}); running the API-level modem instead of the "
              f"{board.radio['type']} twin", file=sys.stderr)
        return None
    if not files:
        return None
    return lib_folder(((p.removeprefix("lib/"), d) for p, d in files), "citynode-lora")


def cmd_simulate(args) -> int:
    from citynode.sim.fleet.sim import SimConfig, Simulation

    if args.nodes < 1 or args.days <= 0:
        raise CitynodeError("--nodes must be at least 1 and --days positive")
    cfg = SimConfig(nodes=args.nodes, days=args.days, seed=args.seed, interval_s=args.interval, loss=args.loss,
                    power_cuts=args.power_cuts, hangs=args.hangs, deep_sleep=args.deep_sleep,
                    confirmed=args.confirmed)
    if args.battery is not None:
        if args.battery <= 0:
            raise CitynodeError("--battery must be a positive number of mAh")
        cfg.battery_mah = args.battery
    if args.replay:
        cfg.start_unix, cfg.env_series, cfg.pm_series, cfg.counter = replay_series(args.replay, args.days)
    if cfg.deep_sleep and cfg.counter is not None:  # as cnode.runner.sleep_deep decides on a board
        print("citynode simulate: counting nodes stay in light sleep (a pulse counter counts in RAM between "
              "cycles); --deep-sleep does not apply to them", file=sys.stderr)
        cfg.deep_sleep = False
    if args.board or args.runtime == "micropython":
        from citynode.device.boards import get_board

        board = get_board(args.board or "virtual")
        cfg.board = board.node_config()
        if args.runtime == "micropython" and not args.api_radio:
            cfg.radio_lib = radio_lib(board, args.mip_index)
    if args.runtime == "micropython":
        from citynode.sim.fleet.unix_nodes import run_micropython

        res, frames = run_micropython(cfg, heap=args.heap or ("256K" if cfg.radio_lib else "192K"))
    else:
        bar = Progress(f"simulating {args.nodes} nodes x {args.days:g} days", label_width=None, fill="-", timer=True)
        cfg.progress = bar.set
        sim = Simulation(cfg)
        res = sim.run()
        bar.set(1.0)
        bar.finish()
        frames = sim.frames_jsonl() if args.frames else []
    if args.out:
        with open(args.out, "w") as f:
            for s in res.decoded:
                f.write(json.dumps(s) + "\n")
    if args.frames:  # it holds every node's keys: readable by its owner only, whatever the umask
        try:
            fd = os.open(args.frames, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise CitynodeError(f"cannot write {args.frames}: {e.strerror}") from None
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(frames) + ("\n" if frames else ""))
    report = {"config": res.config, "totals": res.totals, "nodes": res.nodes}
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=1)
    print_summary(report, sys.stdout)
    print_decoded(res.decoded, sys.stdout)
    return 0


def print_decoded(samples: list[dict], out) -> None:
    """What the network side decoded, per channel: readings, min, mean, max, and flagged readings."""
    from citynode.payload.channels import BY_NAME

    acc: dict[str, list] = {}
    flagged: dict[str, int] = {}
    for s in samples:
        for k, v in s["values"].items():
            if v is not None:
                acc.setdefault(k, []).append(v)
        for k in s.get("flags", {}):
            flagged[k] = flagged.get(k, 0) + 1
    if not acc:
        return
    out.write(f"\n{'channel':<15}{'unit':<7}{'readings':>9}{'min':>11}{'mean':>11}{'max':>11}{'flagged':>9}\n")
    for name in sorted(acc, key=lambda n: BY_NAME[n].id):
        v = acc[name]
        d = BY_NAME[name].decimals
        out.write(f"{name:<15}{BY_NAME[name].unit or '-':<7}{len(v):>9}{min(v):>11.{d}f}{sum(v) / len(v):>11.{d}f}"
                  f"{max(v):>11.{d}f}{flagged.get(name, 0):>9}\n")


def print_summary(report: dict, out) -> None:
    t = report["totals"]
    out.write(f"{'node':<18}{'uplinks':>8}{'bytes':>8}{'air s/day':>10}{'duty%lim':>9}{'joins':>6}"
              f"{'measured':>9}{'delivered':>10}{'pending':>8}{'lost':>6}{'dups':>6}{'cuts':>5}\n")
    for n in report["nodes"] + [t]:
        out.write(f"{n['dev_eui']:<18}{n['uplinks']:>8}{n['bytes']:>8}{n['airtime_s_per_day']:>10.2f}"
                  f"{n['duty_cycle_pct_of_limit']:>9.2f}{n['join_attempts']:>6}{n['samples_measured']:>9}"
                  f"{n['samples_delivered']:>10}{n['samples_pending']:>8}{n['samples_lost']:>6}"
                  f"{n['duplicates']:>6}{n['power_cuts']:>5}\n")
    out.write(f"{t['virtual_days']:g} virtual days in {t['wall_s']:.1f} s; collisions {t['collided']}, "
              f"lost on air {t['lost_on_air']}, decode errors {t['decode_errors']}\n")
    out.write(f"sample times: true UTC at most {t['time_error_max_s']:.2f} s outside the second each names "
              f"({t['samples_time_wrong']} off by more than 1 s; clocks set {t['clock_sets']} times); network MAC requests answered in the next uplink "
              f"{t['mac_answered']} of {t['mac_answered'] + t['mac_unanswered']}; watchdog resets {t['wdt_resets']}"
              + (f" ({t['hangs_injected']} hangs injected)" if "hangs_injected" in t else "") + "\n")
    shares = {}
    for n in report["nodes"]:
        for k, v in n.get("energy_shares", {}).items():
            shares[k] = shares.get(k, 0.0) + v / len(report["nodes"])
    if shares:
        out.write(f"energy: up to {t['mah_per_day']:.2f} mAh/day per node ("
                  + ", ".join(f"{k} {100 * v:.0f} %" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))
                  + f"); the hungriest node's battery lasts {t['battery_days']:g} days; "
                  f"lowest cell voltage {t['battery_mv']} mV\n")
    if t["samples_lost"]:
        out.write(f"of the {t['samples_lost']} samples lost, {t['samples_lost_on_air']} went only in frames that "
                  f"collided or were lost on air (unconfirmed uplinks); {t['samples_lost'] - t['samples_lost_on_air']}"
                  f" were lost otherwise\n")

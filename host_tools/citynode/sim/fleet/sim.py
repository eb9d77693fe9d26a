"""A fleet in virtual time: nodes running the firmware, a radio channel with collisions and loss, a network
server (join, MIC, decryption, dedup, downlinks), the decoder, and the per-node report."""
from __future__ import annotations

import bisect
import json
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from cnode.lorawan.region import BANDS, DR_SF

from citynode.payload.decode import Deduplicator, Stats, decode_uplink
from citynode.sim.hwsim import machine as hw
from citynode.sim.netserver import NetworkServer, dev_status_req, link_adr_req
from citynode.payload.frame import FPORT, PayloadError, decode_frame
from citynode.payload.channels import EPOCH_2000
from citynode.payload.uplink import Uplink as UplinkMsg
from citynode.sim.fleet.air import FleetAir
from citynode.sim.fleet.scheduler import SchedClock, Scheduler
from citynode.sim.fleet.world import NodeWorld, PowerCut

START_UNIX = 1_767_225_600  # 2026-01-01T00:00:00Z: synthetic runs start at a midnight


@dataclass
class SimConfig:
    nodes: int = 5
    days: float = 1.0
    seed: int = 1
    interval_s: int = 300
    loss: float = 0.0
    confirmed: bool = False  # confirmed uplinks: the queue lets go of samples only on the network's ACK
    power_cuts: int = 0
    deep_sleep: bool = False
    mac_every_s: int = 21600  # the network sends DevStatusReq and a LinkADRReq (keep settings) this often
    hangs: int = 0  # injected hangs (MicroPython runtime): the node stops feeding its watchdog
    start_unix: int = START_UNIX
    env_series: object = None  # functions of ms since start (replay), or None for synthetic
    pm_series: object = None
    counter: object = None  # (channel, [count per hour from the start]) drives a pulse counter on every node
    progress: Callable[[float], object] | None = None  # fn(fraction) or None
    drain_s: int = 7200  # nodes run on this long so that what they measured in time can still be sent
    board: dict | None = None  # the board file (dict) every node is: its name goes into --frames; under the MicroPython
    #                       runtime its LoRa chip runs as a register-level twin under micropython-lib's driver
    battery_mah: float | None = None  # each node's cell (mAh); None: the board's cell (citynode.energy), else 3400
    radio_lib: str | None = None  # folder holding micropython-lib's `lora` package for the node processes (or None:
    #                           the API-level modem)


@dataclass
class NodeReport:
    dev_eui: str
    uplinks: int = 0
    bytes: int = 0
    airtime_s_per_day: float = 0.0
    duty_cycle_pct_of_limit: float = 0.0
    join_attempts: int = 0
    samples_measured: int = 0
    samples_delivered: int = 0
    samples_pending: int = 0
    samples_lost: int = 0
    samples_lost_on_air: int = 0  # of samples_lost: carried only by frames that collided or the channel lost
    duplicates: int = 0
    power_cuts: int = 0
    wdt_resets: int = 0
    mac_answered: int = 0  # network MAC requests answered in the next uplink
    mac_unanswered: int = 0
    boots: int = 0
    time_error_max_s: float = 0.0  # largest distance of a measurement's true UTC from the second its time names
    samples_time_wrong: int = 0  # delivered samples whose time is off by more than 1 s
    clock_sets: int = 0  # DeviceTimeAns that set the node's clock
    mah_per_day: float = 0.0  # charge drawn (citynode.energy: the twins' power states x the parts' currents)
    battery_days: float = 0.0  # the cell's usable charge (to the cut-off voltage) at that rate
    battery_mv: int = 0  # the cell's open-circuit voltage at the end
    energy_shares: dict = field(default_factory=dict)  # component -> share of the charge


@dataclass
class SimResult:
    config: dict
    nodes: list = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    decoded: list = field(default_factory=list)
    frames: list = field(default_factory=list)


class Simulation:
    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.sched = Scheduler(start_s=cfg.start_unix - EPOCH_2000)
        self.clock = SchedClock(self.sched)
        hw.use(self.clock)  # UART twins read the time through the machine double
        self.air = FleetAir(seed=cfg.seed, loss=cfg.loss)
        self.ns = NetworkServer(self.air, utc_at_zero_s=self.sched.start_s)
        self.ns.add_gateway()
        self.dedup = Deduplicator()
        self.stats = Stats()
        self.decoded: list[dict] = []
        self.errors: list[str] = []
        self.worlds: list[NodeWorld] = []
        self._seen_uplinks: dict = {}
        self.dups: dict[str, int] = {}
        self.air.after(self._collect)  # after the network server has handled the frame
        self.air.on_start = self._tag
        self._by_name: dict = {}
        self._last_join: dict = {}  # frequency -> device of the last join-request heard there
        self.board_name = (cfg.board or {}).get("name", "virtual")
        self.radio_kind = "api"  # the API-level modem (SimModem); "twin" when the chip's twin runs the driver
        self.cell_mah = cfg.battery_mah if cfg.battery_mah is not None else _board_cell(cfg.board)
        for i in range(cfg.nodes):
            dev_eui = bytes.fromhex("70b3d57ed0%06x" % i)
            app_key = bytes(self.rng.getrandbits(8) for _ in range(16))
            self.ns.add_device(dev_eui, app_key)
            w = NodeWorld(i, self.clock, self.air, dev_eui, app_key, seed=cfg.seed * 1000 + i,
                          interval_s=cfg.interval_s, env_series=cfg.env_series, pm_series=cfg.pm_series,
                          deep_sleep=cfg.deep_sleep, confirmed=cfg.confirmed, counter=cfg.counter, board=cfg.board,
                          cell_mah=self.cell_mah)
            w.utc0_us = self.sched.start_s * 1_000_000
            self.worlds.append(w)
            self._by_name[w.name] = dev_eui

    def _tag(self, tx) -> None:
        """Note on each frame the device and the keys in force as it goes on air (for --frames)."""
        dev = None
        data = tx.data
        if tx.source in self._by_name:
            dev = self.ns.devices.get(self._by_name[tx.source])
            if data and data[0] >> 5 == 0:
                self._last_join[tx.freq_khz] = dev
        elif data and data[0] >> 5 == 1:  # join-accept: answers the join-request heard on this channel
            dev = self._last_join.get(tx.freq_khz) or next(
                (d for d in self.ns.devices.values() if d.downlinks and d.downlinks[-1] == data), None)
        elif len(data) >= 5:
            dev = self.ns._by_addr.get(int.from_bytes(data[1:5], "little"))
        if dev is None:
            return
        tx.dev = dev
        tx.keys = (bytes(dev.nwk_skey), bytes(dev.app_skey)) if dev.nwk_skey is not None else None

    def _collect(self) -> None:
        for dev in self.ns.devices.values():
            k = self._seen_uplinks.get(dev.dev_eui, 0)
            for up in dev.uplinks[k:]:
                if up.port != FPORT:
                    continue
                msg = UplinkMsg(up.data, up.port, dev.dev_eui.hex(), up.fcnt)
                before = self.stats.duplicates
                try:
                    samples, _ = decode_uplink(msg, self.dedup, self.stats)
                except PayloadError as e:
                    self.errors.append(f"{dev.dev_eui.hex()}: {e}")
                    continue
                if self.stats.duplicates > before:
                    key = dev.dev_eui.hex()
                    self.dups[key] = self.dups.get(key, 0) + self.stats.duplicates - before
                self.decoded.extend(samples)
            self._seen_uplinks[dev.dev_eui] = len(dev.uplinks)

    def _plan_mac_requests(self, end_s: float) -> None:
        """The network asks each device for its status and re-sends its ADR settings (keep: DR and power 15)
        every mac_every_s, as a network server's ADR does; the answers are counted (Device.mac_answered)."""
        every = self.cfg.mac_every_s
        if every <= 0:
            return
        k = 1
        while k * every < end_s:
            for dev in self.ns.devices.values():
                self.sched.call_at(k * every, lambda dev=dev: self._ask(dev))
            k += 1

    def _ask(self, dev) -> None:
        if dev.nwk_skey is None or 0x06 in dev.mac_queue:
            return
        self.ns.queue_mac(dev.dev_eui, dev_status_req())
        self.ns.queue_mac(dev.dev_eui, link_adr_req(15, 15, 0x0007))

    def _plan_power_cuts(self, end_s: float) -> None:
        for _ in range(self.cfg.power_cuts):
            w = self.rng.choice(self.worlds)
            at = self.rng.uniform(60, end_s)
            self.sched.call_at(at, lambda w=w: self._cut(w))

    def _cut(self, w: NodeWorld) -> None:
        if self.rng.random() < 0.5:
            w.fs.cut_at(self.rng.randrange(3))  # during one of the node's next flash writes
        else:
            for _, _, item in self.sched._heap:  # or wherever the node is now (asleep, radio, sensors)
                if getattr(item, "name", None) == w.name:
                    item.interrupt = PowerCut()

    def run(self) -> SimResult:
        cfg = self.cfg
        end_s = cfg.days * 86400
        for w in self.worlds:
            self.sched.spawn(w.name, w.run)
        self._plan_power_cuts(end_s)
        self._plan_mac_requests(end_s)
        progress = cfg.progress
        if progress is not None:
            steps = 50
            for k in range(1, steps + 1):
                self.sched.call_at(end_s * k / steps, lambda k=k: progress(k / steps))
        t0 = time.perf_counter()
        self.sched.run(until_s=end_s + cfg.drain_s)
        self.wall_s = time.perf_counter() - t0
        return self._report(end_s)

    def _report(self, end_s: float) -> SimResult:
        days = end_s / 86400
        res = SimResult(config={k: v for k, v in vars(self.cfg).items() if isinstance(v, (int, float, str, bool))})
        delivered: dict[str, set] = {}
        for s in self.decoded:
            delivered.setdefault(s["device"], set()).add(s["t"])
        tx_by_node: dict[str, list] = {}
        for tx in self.air.log:
            tx_by_node.setdefault(tx.source, []).append(tx)
        tot = NodeReport("all")
        for w in self.worlds:
            txs = [t for t in tx_by_node.get(w.name, []) if not t.iq_inverted and t.start_us <= end_s * 1_000_000]
            r = NodeReport(w.dev_eui.hex())
            r.uplinks = sum(1 for t in txs if t.data and t.data[0] >> 5 in (2, 4))
            r.bytes = sum(len(t.data) for t in txs)
            r.airtime_s_per_day = sum(t.airtime_us() for t in txs) / 1e6 / days
            r.duty_cycle_pct_of_limit = _max_duty_pct(txs)
            r.join_attempts = sum(1 for t in txs if t.data and t.data[0] >> 5 == 0)
            # samples taken within the run's days; the drain period only lets them reach the network
            last = self.cfg.start_unix + end_s
            measured = {EPOCH_2000 + t for t in w.measured if EPOCH_2000 + t <= last}
            got = {t for t in delivered.get(w.dev_eui.hex(), set()) if t <= last}
            pending = measured - got
            r.samples_measured = len(measured)
            r.samples_delivered = len(measured & got)
            # samples not yet delivered are still in the node's queue unless the queue dropped them; the queue
            # is first in, first out, so what it holds are the newest records pushed (the drain period's too)
            depth = w.node.queue.depth if w.node is not None else 0
            in_queue = {EPOCH_2000 + t for t in w.measured[len(w.measured) - depth:]} if depth else set()
            r.samples_pending = len(pending & in_queue)
            r.samples_lost = len(pending) - r.samples_pending
            if r.samples_lost:
                failed = set()
                for t in tx_by_node.get(w.name, []):  # the drain period's frames too
                    if getattr(t, "fate", "") in ("collided", "lost"):
                        failed |= _carried(t)
                r.samples_lost_on_air = min(r.samples_lost, len(pending & failed))
            # the time on each delivered sample against the true UTC of its measurement (the BME280 trigger): a
            # time in whole seconds names a second, [t, t + 1); the error is how far outside it the truth lies
            true_s = sorted(EPOCH_2000 + u / 1e6 for u in w.true_us)
            for t in got:
                i = bisect.bisect_left(true_s, t)
                err = min((max(t - true_s[j], true_s[j] - t - 1, 0.0) for j in (i - 1, i) if 0 <= j < len(true_s)),
                          default=1e9)
                r.time_error_max_s = max(r.time_error_max_s, round(err, 3))
                r.samples_time_wrong += err > 1.0
            r.clock_sets = w.clock_sets
            r.duplicates = self.dups.get(w.dev_eui.hex(), 0)
            d = self.ns.devices[w.dev_eui]
            r.mac_answered, r.mac_unanswered = d.mac_answered, d.mac_unanswered
            r.power_cuts = w.power_cuts
            r.wdt_resets = w.wdt_resets
            r.boots = w.boots
            _energy(r, w, self.cell_mah)
            res.nodes.append(dict(vars(r)))
            for k, v in vars(r).items():
                if isinstance(v, (int, float)) and k not in ("duty_cycle_pct_of_limit", "time_error_max_s",
                                                             "mah_per_day", "battery_days", "battery_mv"):
                    setattr(tot, k, getattr(tot, k) + v)
            tot.mah_per_day = max(tot.mah_per_day, r.mah_per_day)  # the fleet's hungriest node
            tot.battery_days = min(tot.battery_days or r.battery_days, r.battery_days)
            tot.battery_mv = min(tot.battery_mv or r.battery_mv, r.battery_mv)
            tot.duty_cycle_pct_of_limit = max(tot.duty_cycle_pct_of_limit, r.duty_cycle_pct_of_limit)
            tot.time_error_max_s = max(tot.time_error_max_s, r.time_error_max_s)
        tot_d = vars(tot)
        tot_d.update({"board": self.board_name, "radio": self.radio_kind,
                      "duplicates": self.stats.duplicates, "collided": self.air.collided,
                      "lost_on_air": self.air.lost, "decode_errors": len(self.errors),
                      "wall_s": round(self.wall_s, 2), "virtual_days": days})
        res.totals = tot_d
        last = self.cfg.start_unix + end_s
        res.decoded = [s for s in self.decoded if s["t"] <= last]
        return res

    def frames_jsonl(self) -> list[str]:
        """Every PHY frame on the air, with the keys that were in force for it (for checking it independently)."""
        lines = []
        for tx in self.air.log:
            rec = {"t": round(self.cfg.start_unix + tx.start_us / 1e6, 3), "dir": "down" if tx.iq_inverted else "up",
                   "phy": tx.data.hex(), "freq_hz": tx.freq_khz * 1000, "dr": DR_SF.index(tx.sf)}
            if not tx.iq_inverted:  # what reached the antenna (None: a PA pin that is not wired to it)
                rec.update({"power_dbm": tx.power, "board": self.board_name, "radio": self.radio_kind})
            dev = getattr(tx, "dev", None)
            if dev is not None:
                rec.update({"dev_eui": dev.dev_eui.hex(), "app_key": dev.app_key.hex()})
                keys = getattr(tx, "keys", None)
                if keys is not None and tx.data[0] >> 5 != 0:
                    rec.update({"nwk_s_key": keys[0].hex(), "app_s_key": keys[1].hex()})
            lines.append(json.dumps(rec))
        return lines


def _board_cell(board) -> float:
    """The cell of the board every node is (citynode.energy), 3,400 mAh (one 18650) when it names none."""
    from citynode.energy import model

    if board is None:
        return 3400.0
    mah = (board.get("battery") or {}).get("cell_mah")
    if mah is None:
        try:
            mah = model.board(board["name"]).get("cell", {}).get("mAh")
        except model.ModelError:
            mah = None
    return float(mah or 3400.0)


def _energy(r: NodeReport, w: NodeWorld, cell_mah: float) -> None:
    """The node's charge per day over the whole run, its shares per component, and the days its cell lasts."""
    from citynode.energy import battery

    u = w.meter.usage()
    days = w.clock.us / 86400e6
    total = u.total_mah()
    r.mah_per_day = round(total / days, 4) if days else 0.0
    r.energy_shares = {k: round(v / total, 4) for k, v in sorted(u.by_component().items(), key=lambda kv: -kv[1])
                       } if total else {}
    r.battery_days = round(battery.usable_mah(cell_mah) / (total / days), 1) if total and days else 0.0
    r.battery_mv = w.cell.millivolts()


def duty_cycle_use(txs) -> list[tuple[int, float, float]]:
    """Per EU868 sub-band that carried frames: (band index, worst share of any sliding hour spent
    transmitting in %, the band's limit in %), from the frames on the air."""
    out = []
    for b, (lo, hi, limit) in enumerate(BANDS):
        ts = sorted((t.start_us, t.end_us) for t in txs if lo <= t.freq_khz <= hi)
        if not ts:
            continue
        worst, used, j = 0.0, 0, 0
        for s, e in ts:
            used += e - s
            while ts[j][0] < e - 3_600_000_000:
                used -= ts[j][1] - ts[j][0]
                j += 1
            worst = max(worst, used / 3_600_000_000 * 100)
        out.append((b, worst, 100.0 / limit))
    return out


def _max_duty_pct(txs) -> float:
    """The largest sliding-hour use of any sub-band, as a share of that band's limit (100 = at the limit)."""
    return max((w / lim * 100 for _, w, lim in duty_cycle_use(txs)), default=0.0)


def _carried(tx) -> set[int]:
    """Unix times of the samples a data uplink carried, read with the keys in force when it was sent (what a
    network server would have decoded had the frame arrived); empty for anything else."""
    # MicroPython's built-in; under CPython the stand-in that importing cnode installs in sys.modules
    import cryptolib  # pyright: ignore[reportMissingImports]

    from cnode.lorawan import crypto

    d, keys = tx.data, getattr(tx, "keys", None)
    if keys is None or len(d) < 13 or d[0] >> 5 not in (2, 4):
        return set()
    p = 8 + (d[5] & 0x0F)  # MHDR, DevAddr, FCtrl, FCnt, FOpts
    if p >= len(d) - 4 or d[p] != FPORT:
        return set()
    buf = bytearray(d[p + 1:len(d) - 4])
    crypto.crypt(cryptolib.aes(keys[1], 1), 0, int.from_bytes(d[1:5], "little"), d[6] | d[7] << 8, buf, 0, len(buf))
    try:
        return {s.t for s in decode_frame(bytes(buf))[0]}
    except PayloadError:
        return set()

"""A board's firmware for a day or two of virtual time on its twins, metered: the charge per component and state."""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from citynode.energy import model
from citynode.energy.meter import Meter, Usage

DEV_EUI = bytes.fromhex("70b3d57ed00e0e0e")
APP_KEY = bytes(range(16))
# meter component name and part of each twin VirtualBoard builds (its name there is the board file's driver)
PARTS = {"bme280": "bme280", "sht4x": "sht4x", "scd4x": "scd4x", "sds011": "sds011", "pms5003": "pms5003",
         "sps30": "sps30", "gps_nmea": "gps", "qmc5883l": "qmc5883l", "vl53l1x": "vl53l1x"}
_I2C_ADDR = {"bme280": "0x76", "sht4x": "0x44", "scd4x": "0x62", "qmc5883l": "0x0D", "vl53l1x": "0x29",
             "dnms": "0x55"}
_UART_SENSORS = ("sds011", "pms5003", "sps30", "gps_nmea")
# UART pins for a sensor the board file does not wire (--sensors): free on every board of that chip we ship
_SPARE_UART: dict[str, tuple[dict[str, Any], ...]] = {  # like a board file's "uarts" entries
    "esp32": ({"id": 1, "tx": 25, "rx": 39}, {"id": 2, "tx": 2, "rx": 36}),
    "esp32s3": ({"id": 1, "tx": 33, "rx": 34}, {"id": 2, "tx": 45, "rx": 46})}


class BudgetError(ValueError):
    """A request the model cannot answer (a sensor the board cannot carry, no figures for a part)."""


@dataclass
class Run:
    board: str
    days: float
    interval_s: int
    wakes: int
    usage: Usage
    radio: str  # "twin" (the chip's twin under micropython-lib's driver) or "api" (the API-level modem)
    uplinks: int = 0
    notes: list = field(default_factory=list)
    sleep_ma: float = 0.0  # what the node drew in its last deep sleep, from every component's state then
    sleep_states: dict = field(default_factory=dict)  # component -> (part, state, detail) in that deep sleep
    frames: list = field(default_factory=list)  # (bytes, SF, downlink) of every frame on the air

    def mah_per_day(self) -> float:
        return self.usage.total_mah() / self.days


def with_sensors(board: dict, sensors) -> dict:
    """The board file with exactly these sensors (driver names as in board files): those the file wires keep
    their wiring; I2C ones go on the board's bus at their default address; UART ones on a free UART."""
    b = copy.deepcopy(board)
    if sensors is None:
        return b
    have = {s["driver"]: s for s in b.get("sensors", ())}
    uarts = list(b.get("uarts", ()))
    radio_uart = (b.get("radio") or {}).get("uart")
    taken = {u["id"] for u in uarts if u.get("use") in sensors or u["id"] == radio_uart}
    out = []
    spare = list(_SPARE_UART.get(b.get("chip", "esp32"), ()))
    for name in sensors:
        if name in have:
            out.append(have[name])
            continue
        if name in _I2C_ADDR:
            if not b.get("i2c"):
                raise BudgetError(f"board {b['name']} has no I2C bus for {name}")
            out.append({"driver": name, "bus": "i2c", "address": _I2C_ADDR[name]})
        elif name in _UART_SENSORS:
            free = [u for u in uarts if u["id"] not in taken]
            if free:
                u = free[0]
            else:
                u = next((dict(s, baud=9600) for s in spare if s["id"] not in {x["id"] for x in uarts}), None)
                if u is None:
                    raise BudgetError(f"board {b['name']}: no free UART for {name}")
                uarts.append(u)
            u["use"] = name
            taken.add(u["id"])
            out.append({"driver": name, "bus": "uart", "uart": u["id"]})
        else:
            raise BudgetError(f"sensor {name!r}: not one the model knows (use names from the board files: "
                              f"{', '.join(sorted(set(_I2C_ADDR) | set(_UART_SENSORS)))})")
    b["sensors"] = out
    b["uarts"] = uarts
    return b


@contextlib.contextmanager
def _tcxo_off_busy():
    """The SX1262 driver polls BUSY once per virtual microsecond: the TCXO start-up (a few ms at each wake of the
    radio) stays off BUSY while a budget runs, so a day answers in seconds. That standby time is left out: 0.05 %
    of the Heltec V3's day (26.2045 against 26.1904 mAh/day)."""
    from citynode.sim.hwsim.twin_sx126x import SX1262Twin

    SX1262Twin.TCXO_ON_BUSY = False
    try:
        yield
    finally:
        SX1262Twin.TCXO_ON_BUSY = True


@contextlib.contextmanager
def _node_folder():
    """The node's flash: a fresh folder as the current directory (board.json, nvs.json, the queue)."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="citynode-budget-") as d:
        os.chdir(d)
        try:
            yield d
        finally:
            os.chdir(old)


def run(board: dict, days: float = 1.0, interval_s: int | None = None, dr: int | None = None, sensors=None,
        lib_dir: str | None = None) -> Run:
    """Boot the board's firmware (cnode.runner, as main.py runs it) on its twins, wake after wake through deep
    sleep, for `days` of virtual time, with every twin and the CPU metered. `lib_dir` holds micropython-lib's
    lora package for the board's LoRa chip (its twin runs under the driver); without it the chip is the
    API-level modem, metered in the same states."""
    from cnode.config import Keys
    from cnode.nvsfile import NVS
    from cnode.runner import lora_mac

    from citynode.sim.hwsim import machine as hw
    from citynode.sim.hwsim.clock import VirtualClock
    from citynode.sim.hwsim.power import Powered
    from citynode.sim.hwsim.radio import SimModem
    from citynode.sim.hwsim.virtual_board import VirtualBoard

    b = with_sensors(board, sensors)
    settings = b.setdefault("settings", {})
    if interval_s is not None:
        settings["interval"] = int(interval_s)
    if dr is not None:
        settings["dr"] = int(dr)
        settings["adr"] = False
    interval = settings.get("interval", 300)
    kind = (b.get("radio") or {}).get("type")
    chip_radio = kind in ("sx1276", "sx1262")
    api = chip_radio and lib_dir is None
    notes = []
    with _node_folder(), _tcxo_off_busy():
        with open("board.json", "w") as f:
            json.dump(b, f)
        Keys(NVS("cn_keys")).set(DEV_EUI, bytes(8), APP_KEY)
        clock = VirtualClock()
        hw.use(clock, b.get("chip", "esp32"))
        vb_board = dict(b, radio={"type": "simulated"}) if api else b
        if chip_radio and not api:
            from citynode.sim.hwsim import lora_lib

            lora_lib.load(clock, lib_dir)
        vb = VirtualBoard(vb_board, clock, DEV_EUI, APP_KEY)
        meter = Meter(clock.monotonic_us)
        cpu = b.get("chip", "esp32")
        meter.add("cpu", cpu, "idle")
        hw._state["cpu"] = lambda st: meter.set("cpu", st)
        meter.add("board", "board:" + b["name"], "on")
        for name, twin in vb.twins.items():
            if isinstance(twin, Powered) and name in PARTS:
                meter.watch(name, twin, PARTS[name])
        vext = (b.get("power") or {}).get("vext")
        if vext:  # the board's switched rail feeds its external sensors: off, they draw nothing
            _follow_rail(meter, hw.wire(vext["pin"]), vext.get("active", 0),
                         [(n, t) for n, t in vb.twins.items() if n in PARTS and isinstance(t, Powered)])
        if "pmic" in vb.twins:
            meter.add("pmic", "axp192", "on")
        link = None
        if api:
            assert kind is not None  # api: the radio is an sx1276 or sx1262
            pa = b["radio"].get("tx_ant", "PA_BOOST") if kind == "sx1276" else "HP"
            modem = SimModem(vb.air, "vnode", clock=clock, pa=pa, reg=None if kind == "sx1276" else "LDO")
            meter.watch("radio", modem, kind)
            link = lora_mac(modem, clock, {"adr": settings.get("adr", True)}, DEV_EUI, bytes(8), APP_KEY)
            notes.append(f"radio: no micropython-lib driver given; the {kind} is the API-level modem "
                         "(TX, RX, standby and sleep metered as the driver would set them)")
        elif isinstance(vb.radio, Powered):
            assert kind is not None  # VirtualBoard made a radio twin: the board's radio has a type
            meter.watch("radio", vb.radio, kind)
            if kind in ("lora-e5", "rak3172"):
                notes.append(f"radio: the {kind} is metered idle between transmissions (its receive windows at the "
                             "idle figure): our firmware does not send it a low-power command yet")
        if "blecount" in vb.twins:
            notes.append("blecount: the BLE radio's listening (the scan window's share of the time) is not metered; "
                         "the CPU it keeps awake (no deep sleep while it counts) is")
        boot_ms = model.state_ms(cpu, "boot") or 0
        end_us = int(days * 86400e6)
        wakes = 0
        log = lambda m: None  # noqa: E731
        gc.freeze()  # the firmware collects garbage at every boot (for the board's heap): here it need not scan us
        slept: dict = {}
        try:
            wakes = _wakes(b, clock, meter, link, boot_ms, end_us, log, slept)
        finally:
            gc.unfreeze()
            hw._state["cpu"] = None
        usage = meter.usage()
    uplinks = sum(1 for p, _ in vb.uplinks if p > 0)
    days_run = clock.monotonic_us() / 86400e6
    return Run(b["name"], days_run, interval, wakes, usage, "api" if api or not chip_radio else "twin", uplinks,
               notes, slept.get("ma", 0.0), slept.get("states", {}),
               [(len(tx.data), tx.sf, tx.iq_inverted) for tx in vb.air.log])


def _follow_rail(meter, wire, active, twins) -> None:
    """Sensors behind a switched rail (Heltec Vext): "off" while it is off; at power-up each is in the state
    it starts in at power-on (an SDS011 or PMS5003 runs its fan until told to sleep)."""
    at_power_on = {n: t.power_state for n, t in twins}

    def follow(level):
        on = level == active
        for n, t in twins:
            st = at_power_on[n] if on else "off"
            if t.power_state != st or meter.comps[n]["state"] != st:
                t.power_state = st
                meter.set(n, st)

    wire.watch(follow)


def _wakes(b, clock, meter, link, boot_ms, end_us, log, slept) -> int:
    """Wake after wake as main.py runs them (cnode.runner._run: build, cycle, power down, deep sleep)."""
    from cnode.runner import Runner, sleep_deep

    from citynode.sim.hwsim import machine as hw

    wakes = 0
    while clock.monotonic_us() < end_us:
        wakes += 1
        meter.set("cpu", "idle")
        meter.extra("cpu", "boot", int(boot_ms * 1000))
        try:
            r = Runner(b, hw, clock, log=log, root=".", link=link)
            deep = sleep_deep(b, r, None)
            while clock.monotonic_us() < end_us:
                ms = r.cycle()
                if deep:
                    r.power_down()
                    hw.deepsleep(ms)
                clock.sleep_ms(ms)
        except hw.DeepSleep as e:
            slept.update(ma=meter.now_ma(), states=meter.states())
            clock.sleep_ms(min(e.ms, max(0, -(-(end_us - clock.monotonic_us()) // 1000))))
        except hw.Reset:
            continue
        if not deep:
            break
    return wakes

"""One simulated node: its sensor twins, buses, flash, NVS and RTC memory (which outlive reboots), and the
firmware objects built on them at every boot, exactly as main.py builds them on a board."""
from __future__ import annotations

import math
import random

from cnode.app import Node
from cnode.drivers.battery import Battery
from cnode.drivers.bme280 import BME280
from cnode.drivers.pulse import PulseCounter
from cnode.drivers.sds011 import SDS011
from cnode.lorawan.mac import Mac
from cnode.lorawan.store import DictStore
from cnode.queue import Queue
from cnode.runner import Napping
from cnode.sampler import Sampler, Slot

from citynode.energy import model
from citynode.energy.battery import Cell
from citynode.energy.meter import Meter
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.counting_queue import CountingQueue
from citynode.sim.hwsim.flashfs import FlashFS, PowerLoss
from citynode.sim.hwsim.power import Powered
from citynode.sim.hwsim.twin_adc import BatteryTwin
from citynode.sim.hwsim.twin_bme280 import BME280Twin, diurnal
from citynode.sim.hwsim.twin_mobility import PulseTwin
from citynode.sim.hwsim.twin_uart_pm import SDS011Twin
from citynode.sim.fleet.air import FleetModem

STATUS = ("reboot_reason", "fw_version", "queue_depth", "dropped", "crashes")
_CTRL_MEAS = 0xF4  # BME280 register whose write starts a forced measurement (datasheet 5.4.5)


class _Witness:
    """The BME280 on the node's bus, as seen by the harness: the true UTC of every measurement it starts
    (one per sample), to check the time the node stamps on it."""

    def __init__(self, twin, world):
        self.twin = twin
        self.world = world

    def write(self, data):
        if len(data) > 1 and data[0] == _CTRL_MEAS and data[1] & 3 in (1, 2):
            self.world.true_us.append(self.world.utc_us())
        return self.twin.write(data)

    def read(self, n):
        return self.twin.read(n)


class NodeClock:
    """The node's `time` module: the fleet's ticks and sleeps, and the board's own wall clock (RTC), which
    counts from 0 at power-on and runs on through deep sleep until the firmware sets it."""

    def __init__(self, clock, world):
        self._c = clock
        self._w = world

    def __getattr__(self, name):
        return getattr(self._c, name)

    def time(self):
        return self._w.wall_us() // 1_000_000
R1, R2 = 100_000, 100_000  # battery divider of the boards we ship (boards/*.json)


class PowerCut(Exception):
    """The node lost power (raised into its thread by the simulator)."""


def synthetic_pm(seed: int):
    """PM2.5/PM10 for a street: background, rush-hour peaks, and slow random weather (deterministic)."""
    rng = random.Random(seed)
    phases = [rng.uniform(0, 2 * math.pi) for _ in range(3)]

    def series(ms):
        h = (ms / 3_600_000.0) % 24.0
        traffic = math.exp(-((h - 8.0) / 1.5) ** 2) + 0.8 * math.exp(-((h - 17.5) / 2.0) ** 2)
        days = ms / 86_400_000.0
        weather = 1.0 + 0.5 * math.sin(2 * math.pi * days / 3.1 + phases[0]) + 0.2 * math.sin(
            2 * math.pi * days * 5.3 + phases[1])
        pm25 = max(0.5, (4.0 + 14.0 * traffic) * weather + 1.5 * math.sin(ms / 97_000.0 + phases[2]))
        return {"pm2_5": pm25, "pm10": pm25 * 1.7 + 2.0}

    return series


class NodeWorld:
    def __init__(self, index: int, clock, air, dev_eui: bytes, app_key: bytes, seed: int, interval_s: int = 300,
                 env_series=None, pm_series=None, deep_sleep: bool = False,
                 confirmed: bool = False, counter=None, board=None, cell_mah: float = 3400.0):
        self.index = index
        self.name = f"node{index:03d}"
        self.clock = clock
        self.air = air
        self.dev_eui = dev_eui
        self.app_key = app_key
        self.interval_s = interval_s
        self.deep_sleep = deep_sleep
        self.confirmed = confirmed
        self.rng = random.Random(seed)
        offset_ms = self.rng.uniform(-1.0, 1.0) * 1800_000  # a different micro-climate per node (synthetic)
        # a replayed series is read at the node's true time, as recorded: every node sees the same values
        self.env_series = env_series if env_series is not None else (lambda ms: diurnal(ms + offset_ms))
        self.pm_series = pm_series or synthetic_pm(seed)
        # hardware and persistent state (outlive reboots)
        self.i2c = hw.I2C(0)
        # a recording carries its sensor's noise: the twin adds none of its own (it dithers bits that the
        # compensation ignores, so that a value held between recorded rows does not look like a stuck chip)
        self.bme_twin = BME280Twin(clock, self.env_series) if env_series is None else BME280Twin(
            clock, self.env_series, noise=0, dither=True)
        self.i2c.attach(0x76, _Witness(self.bme_twin, self))
        self.utc0_us = 0  # UTC (us since 2000) at virtual time 0: set by the simulation
        self.rtc_off_us = 0  # the board's wall clock minus virtual time (us); power_on() zeroes the clock
        self.true_us: list[int] = []  # true UTC (us since 2000) of every BME280 measurement (one per sample)
        self.clock_sets = 0
        self.sds_twin = SDS011Twin(clock, self.pm_series, seed=seed & 0xFFFF)
        self.uart = hw.UART(1, 9600)
        self.uart.attach(self.sds_twin)
        self.adc = hw.ADC(35)
        # what the node draws, per component and state (citynode.energy); its cell's voltage follows the charge
        self.board = board or {"name": "virtual", "chip": "esp32", "radio": {"type": "sx1276", "tx_ant": "PA_BOOST"}}
        self.meter = Meter(lambda: clock.us)
        self.cpu_part = self.board.get("chip", "esp32")
        self.meter.add("cpu", self.cpu_part, "idle")
        self.meter.add("board", "board:" + self.board["name"], "on")
        for name, twin in (("bme280", self.bme_twin), ("sds011", self.sds_twin)):
            if isinstance(twin, Powered):
                self.meter.watch(name, twin, name)
        r = self.board.get("radio") or {}
        self.radio_part = r.get("type", "sx1276") if r.get("type") in ("sx1276", "sx1262") else "sx1276"
        self.radio_pa = r.get("tx_ant", "PA_BOOST") if self.radio_part == "sx1276" else "HP"
        self.cell = Cell(cell_mah, self.meter.charge_mah, start_soc=0.95)
        self.bat_twin = BatteryTwin(R1, R2, self.cell.millivolts)
        self.bat_twin.attach(self.adc)
        self.modem = None  # the node's radio (FleetModem), metered from its first boot on
        # a pulse counter (PIR / radar) driven by counts per hour, e.g. a replayed bike counter
        self.counter = counter  # (channel, [count per hour from the start])
        self.count_pin = hw.Pin(27, hw.Pin.IN)
        self.count_twin = None
        self.fs = FlashFS(seed=seed)
        self.nvs = DictStore()
        self.rtc_mem = b""
        self.reset_cause = 1  # power-on
        # what the harness counts (not node RAM)
        self.measured: list[int] = []  # sample times whose push() returned (acknowledged as stored)
        self.boots = 0
        self.power_cuts = 0
        self.wdt_resets = 0
        self.node: Node | None = None
        self.mac: Mac | None = None

    # --- the board's wall clock ------------------------------------------------------------------------
    def utc_us(self):
        return self.utc0_us + self.clock.us

    def wall_us(self):
        return self.clock.us + self.rtc_off_us

    def power_on(self):
        """Power-on: the ESP32's RTC counts from 0 (2000-01-01), as after every power cut."""
        self.rtc_off_us = -self.clock.us

    def set_clock(self, s, us):
        """What machine.RTC().datetime(...) does on the board (the MAC calls it on a DeviceTimeAns)."""
        old = self.wall_us() // 1_000_000
        self.rtc_off_us = s * 1_000_000 + us - self.clock.us
        self.clock_sets += 1
        return s - old

    # --- RTC memory as the node sees it ---------------------------------------------------------------
    def memory(self, data=None):
        if data is None:
            return self.rtc_mem
        self.rtc_mem = bytes(data)
        return None

    def boot(self) -> Node:
        """Build the firmware objects as main.py does after a reset."""
        self.boots += 1
        c = NodeClock(self.clock, self)
        sds = SDS011(self.uart, c)
        slots = [Slot(sds, warmup_ms=SDS011.warmup_ms), Slot(BME280(self.i2c, c)),
                 Slot(Battery(self.adc, R1, R2, samples=4))]  # 4 ADC readings averaged on the simulated board
        if self.counter is not None:
            slots.append(Slot(PulseCounter(self.count_pin, c, channel=self.counter[0], dead_ms=2000)))
        sampler = Sampler(slots, c, extra=STATUS)
        queue = CountingQueue(Queue(self.fs, "/q", seg_bytes=4096, max_segs=16), self.measured.append)
        modem = self.radio()
        mac = Mac(modem, c, self.nvs, self.dev_eui, bytes(8), self.app_key,
                  rand=lambda n: self.rng.randrange(n) if n > 0 else 0)
        # the firmware's hook, fn(s, us) or None: declared None in cnode.lorawan.mac (no typing on MicroPython)
        mac.set_clock = self.set_clock  # pyright: ignore[reportAttributeAccessIssue]
        self.mac = mac
        reason = {1: 1, 4: 4, 3: 3, 2: 2}.get(self.reset_cause, 0)
        # on a board that deep-sleeps, cnode.runner gives the node a clock whose warm-up wait is a light sleep
        nap = c
        if self.deep_sleep and self.counter is None:
            nap = Napping(c, self, modem.sleep)
            nap.on = True  # as the Runner turns it on once no driver counts pulses in RAM
        self.meter.set("cpu", "idle")
        self.meter.extra("cpu", "boot", int((model.state_ms(self.cpu_part, "boot") or 0) * 1000))
        self.node = Node(nap, sampler, queue, mac, interval_s=self.interval_s, rtc=self, reboot_reason=reason,
                         confirmed=self.confirmed)
        return self.node

    def radio(self) -> FleetModem:
        """The node's radio chip (API-level), one for its life (a reboot reconfigures it), metered."""
        if self.modem is None:
            self.modem = FleetModem(self.air, self.clock, self.name)
            self.modem.pa = self.radio_pa
            self.modem.reg = None if self.radio_part == "sx1276" else "LDO"
            self.meter.watch("radio", self.modem, self.radio_part)
        return self.modem

    def lightsleep(self, ms):
        """machine.lightsleep as Napping calls it: the CPU in light sleep for ms."""
        self.meter.set("cpu", "light_sleep")
        self.clock.sleep_ms(ms)
        self.meter.set("cpu", "idle")

    def start_counter(self) -> None:
        """The pulse twin on the counter pin, once per node (its edges are this node's own events)."""
        if self.counter is not None and self.count_twin is None:
            self.count_twin = PulseTwin(self.count_pin, self.clock, self.counter[1], period_ms=3_600_000,
                                        seed=self.index + 1, min_gap_ms=2500)

    def run(self, task) -> None:
        """The node's life: boot, cycle, sleep; reboot after deep sleep or a power cut."""
        c = self.clock
        self.start_counter()
        c.sleep_ms(self.rng.uniform(0, self.interval_s * 1000))  # nodes are not switched on in step
        self.power_on()
        while True:
            try:
                node = self.boot()
                while True:
                    ms = node.cycle()
                    if self.deep_sleep:
                        self.reset_cause = hw.DEEPSLEEP_RESET
                        self.radio().sleep()  # as cnode.runner's power_down before deep sleep
                        self.meter.set("cpu", "deep_sleep")
                        c.sleep_ms(ms)
                        break  # wake from deep sleep = a fresh boot with RTC memory kept
                    c.sleep_ms(ms)
            except (PowerCut, PowerLoss):
                self.power_cuts += 1
                self.fs.reboot()
                self.rtc_mem = b""  # RTC memory does not survive a power cut
                self.reset_cause = hw.PWRON_RESET
                self.node = None
                self.meter.set("cpu", "off")  # no power: nothing drawn until it returns
                c.sleep_ms(self.rng.uniform(500, 5000))
                self.power_on()

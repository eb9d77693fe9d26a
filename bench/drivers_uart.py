# Heap and time per read() of the UART PM drivers and the battery driver, under MicroPython.
#
# Run: .venv/bin/micropython bench/drivers_uart.py   (or .venv/bin/python bench/drivers_uart.py, which
# re-runs itself under the MicroPython unix port next to the interpreter). Prints a table, then one JSON line.
#
# Two set-ups per driver:
#   driver  a replay UART that answers every command with a fixed, prebuilt reply without allocating, and
#           a counting clock: what the driver itself allocates and costs per read
#   sim     the hwsim UART double, the chip's twin and the VirtualClock: the whole simulated read
# Heap: gc.disable(), warm-up reads, then gc.mem_alloc() before and after N reads, divided by N.
# Time: time.ticks_us() over the same N reads, best of 5 rounds, on this host's CPU (not an ESP32's).
import sys

try:
    import gc
    gc.mem_alloc  # noqa: B018  (MicroPython only)
except (ImportError, AttributeError):
    import os
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    mp = os.path.join(os.path.dirname(sys.executable), "micropython")
    env = dict(os.environ, MICROPYPATH=os.path.join(root, "firmware") + ":" + os.path.join(root, "host_tools"))
    sys.exit(subprocess.call([mp, "-X", "heapsize=4M", os.path.abspath(__file__)] + sys.argv[1:], env=env))

import json
import time

from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_adc import BatteryTwin
from citynode.sim.hwsim.twin_uart_pm import PMS5003Twin, SDS011Twin, SPS30Twin, constant
from cnode.drivers.battery import Battery
from cnode.drivers.pms5003 import PMS5003
from cnode.drivers.sds011 import SDS011
from cnode.drivers.sps30 import SPS30, FORMAT_FLOAT

N = 200
N_SIM = 20  # the simulated SPS30 read allocates ~20 KB (twin and double) with the collector off
WARM = 5


class CountClock:
    """time-like clock that never allocates: ticks advance only by sleep_ms."""

    def __init__(self):
        self.t = 0

    def ticks_ms(self):
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, b):
        return a + b

    def sleep_ms(self, ms):
        self.t += ms


class ReplayUart:
    """Answers every write with the same reply bytes; reads copy without allocating."""

    def __init__(self, reply):
        self.reply = reply
        self.pos = len(reply)

    def write(self, buf):
        self.pos = 0
        return len(buf)

    def any(self):
        return len(self.reply) - self.pos

    def readinto(self, buf, n=None):
        m = len(self.reply) - self.pos
        if n is None or n > m:
            n = m
        r = self.reply
        p = self.pos
        for i in range(n):
            buf[i] = r[p + i]
        self.pos = p + n
        return n


class ConstAdc:
    def __init__(self, uv):
        self.uv = uv

    def read_uv(self):
        return self.uv


def measure(drv, n=N, rounds=5):
    """(heap bytes per read, microseconds per read): heap of the last round, best time of `rounds`."""
    for _ in range(WARM):
        drv.read()
    best = None
    per = 0
    for _ in range(rounds):
        if hasattr(drv, "uart") and hasattr(drv.uart, "sent"):
            drv.uart.sent = bytearray()  # the UART double keeps everything written: start empty
        gc.collect()
        gc.disable()
        a0 = gc.mem_alloc()
        t0 = time.ticks_us()
        for _ in range(n):
            drv.read()
        t1 = time.ticks_us()
        a1 = gc.mem_alloc()
        gc.enable()
        per = (a1 - a0) / n
        us = time.ticks_diff(t1, t0) / n
        if best is None or us < best:
            best = us
    return per, best


def replies():
    clock = VirtualClock()
    sds = SDS011Twin(clock, constant(12.3, 45.6), device_id=0xA160).frame(0)
    pms = PMS5003Twin(clock, constant(12.3, 45.6, 7.8)).frame(0)
    sps = SPS30Twin(clock, constant(12.3, 45.6, 7.8))
    sps.fmt = 0x05
    sps16 = _sps_reply(sps)
    sps.fmt = 0x03
    spsf = _sps_reply(sps)
    return sds, sps16, spsf, pms


def _sps_reply(twin):
    from citynode.sim.hwsim.twin_uart_pm import shdlc_frame
    data = twin._measurement(0)
    return shdlc_frame(bytes([0, 3, 0, len(data)]) + data)


def driver_only():
    sds, sps16, spsf, pms = replies()
    out = []
    d = SDS011(ReplayUart(sds), CountClock())
    d.ready = True
    out.append(("SDS011 query", d))
    d = SPS30(ReplayUart(sps16), CountClock())
    d.measuring = True
    out.append(("SPS30 uint16", d))
    d = SPS30(ReplayUart(spsf), CountClock(), fmt=FORMAT_FLOAT)
    d.measuring = True
    out.append(("SPS30 float", d))
    d = PMS5003(ReplayUart(pms), CountClock())
    d.ready = True
    out.append(("PMS5003 passive", d))
    out.append(("Battery x16", Battery(ConstAdc(1987654), 100000, 100000)))
    return out


def simulated():
    out = []
    clock = VirtualClock()
    machine.use(clock)
    u = machine.UART(1, 9600)
    u.attach(SDS011Twin(clock, constant(12.3, 45.6), query_mode=True))
    out.append(("SDS011 query", SDS011(u, clock)))
    u = machine.UART(2, 115200)
    u.attach(SPS30Twin(clock, constant(12.3, 45.6, 7.8)))
    out.append(("SPS30 uint16", SPS30(u, clock)))
    # the ESP32 has UART0..2 (the double refuses others): each driver is measured on its own, so ids repeat
    u = machine.UART(1, 115200)
    u.attach(SPS30Twin(clock, constant(12.3, 45.6, 7.8)))
    out.append(("SPS30 float", SPS30(u, clock, fmt=FORMAT_FLOAT)))
    u = machine.UART(2, 9600)
    u.attach(PMS5003Twin(clock, constant(12.3, 45.6, 7.8), passive=True))
    out.append(("PMS5003 passive", PMS5003(u, clock)))
    adc = machine.ADC(machine.Pin(35))
    BatteryTwin(100000, 100000, 3975).attach(adc)
    out.append(("Battery x16", Battery(adc, 100000, 100000)))
    return out


def main():
    results = []
    sim = dict(simulated())
    for name, drv in driver_only():
        b, us = measure(drv)
        sb, sus = measure(sim[name], N_SIM)
        results.append({"driver": name, "values": list(drv.values), "heap_bytes_per_read": b,
                        "us_per_read": round(us, 1),
                        "sim_heap_bytes_per_read": sb, "sim_us_per_read": round(sus, 1)})
    print("%-16s %12s %10s %14s %12s  %s" % ("driver", "heap B/read", "us/read", "sim heap B/rd",
                                             "sim us/read", "values"))
    for r in results:
        print("%-16s %12.1f %10.1f %14.1f %12.1f  %s" % (
            r["driver"], r["heap_bytes_per_read"], r["us_per_read"], r["sim_heap_bytes_per_read"],
            r["sim_us_per_read"], r["values"]))
    print(json.dumps({"bench": "drivers_uart", "reads": N, "sim_reads": N_SIM, "interpreter": "micropython unix " + sys.version,
                      "results": results}))


main()

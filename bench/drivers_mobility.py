# Benchmark of the mobility drivers: heap bytes and microseconds per read after warm-up, table + JSON.
#
# Run under the MicroPython unix port (the figures that matter):
#   MICROPYPATH=firmware:host_tools .venv/bin/micropython bench/drivers_mobility.py
# (CPython also runs it: `PYTHONPATH=firmware:host_tools python bench/drivers_mobility.py`, heap then n/a.)
# Two bus flavours: "driver" uses the allocation-free fake buses below, so the heap column is the driver's
# own; "hwsim" goes through citynode.sim.hwsim's machine double and twins (which allocate themselves).
import gc
import json
import sys
import time

MP = sys.implementation.name == "micropython"
N = 200

import cnode  # noqa: F401  (const shim under CPython)
from cnode.drivers.pulse import PulseCounter
from cnode.drivers.qmc5883l import QMC5883L
from cnode.drivers.vl53l1x import VL53L1X
from cnode.drivers.nmea import NMEA
from cnode.drivers.blecount import BleCounter
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.twin_mobility import QMC5883LTwin, VL53L1XTwin
from citynode.sim.hwsim.twin_gps import GpsTwin, rmc, gga


class FastClock:
    """time-module API with a counter: cheap and allocation-free on both interpreters."""

    def __init__(self):
        self.t = 0

    def ticks_ms(self):
        self.t += 1
        return self.t

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, b):
        return a + b

    def sleep_ms(self, n):
        self.t += n

    def time(self):
        return 1000000


def now_us():
    if MP:
        return time.ticks_us()  # type: ignore
    return int(time.perf_counter() * 1000000)


def diff_us(a, b):
    if MP:
        return time.ticks_diff(a, b)  # type: ignore
    return a - b


def heap():
    return gc.mem_alloc() if MP else 0  # type: ignore


def measure(fn, n=N, warm=20):
    for _ in range(warm):
        fn()
    gc.collect()
    if MP:
        gc.disable()
    h0 = heap()
    t0 = now_us()
    for _ in range(n):
        fn()
    t1 = now_us()
    h1 = heap()
    if MP:
        gc.enable()
    return (h1 - h0) / n if MP else None, diff_us(t1, t0) / n


# --- allocation-free fake buses --------------------------------------------------------------------------
class QmcBus:
    def __init__(self):
        self.data = bytearray((0xD0, 0x07, 0x24, 0xFA, 0x94, 0x11))

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        pass

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        if reg == 0x0D:
            buf[0] = 0xFF
        elif reg == 0x06:
            buf[0] = 0x01
        else:
            d = self.data
            d[0] = (d[0] + 1) & 0xFF  # noise, so the stuck check does not trip
            for i in range(len(buf)):
                buf[i] = d[i]


class VlBus:
    def __init__(self):
        self.res = bytearray(17)
        self.res[0] = 9
        self.res[13] = 0x03
        self.res[14] = 0x20

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        pass

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        if reg == 0x010F:
            buf[0] = 0xEA
            buf[1] = 0xCC
        elif reg == 0x0089:
            r = self.res
            for i in range(len(buf)):
                buf[i] = r[i]
        else:  # 0x00E5 booted, 0x0030 polarity reg, 0x0031 data ready
            buf[0] = 0x01


class NmeaUart:
    def __init__(self, data):
        self.data = data
        self.left = 0

    def refill(self):
        self.left = len(self.data)

    def any(self):
        return self.left

    def readinto(self, buf):
        n = min(len(buf), self.left)
        off = len(self.data) - self.left
        d = self.data
        for i in range(n):
            buf[i] = d[off + i]
        self.left -= n
        return n


class DummyPin:
    def irq(self, handler=None, trigger=0, hard=False):
        self.h = handler


def bench():
    rows = []
    fc = FastClock()

    # pulse: IRQ handler cost and read()
    pin = DummyPin()
    pc = PulseCounter(pin, fc, channel="bikes", dead_ms=0)
    h = pc._handler
    rows.append(("pulse", "irq handler", "driver") + measure(lambda: h(pin)))
    rows.append(("pulse", "read", "driver") + measure(pc.read))

    # QMC5883L
    q = QMC5883L(QmcBus(), fc)
    rows.append(("qmc5883l", "read", "driver") + measure(q.read))
    clk = VirtualClock()
    machine.use(clk)
    i2c = machine.I2C(0)
    i2c.attach(0x0D, QMC5883LTwin(clk))
    q2 = QMC5883L(i2c, clk)
    rows.append(("qmc5883l", "read (10 Hz, waits DRDY)", "hwsim") + measure(q2.read, n=50))

    # VL53L1X
    v = VL53L1X(VlBus(), fc)
    rows.append(("vl53l1x", "read", "driver") + measure(v.read))
    clk = VirtualClock()
    machine.use(clk)
    i2c = machine.I2C(0)
    i2c.attach(0x29, VL53L1XTwin(clk))
    v2 = VL53L1X(i2c, clk)
    rows.append(("vl53l1x", "read (waits data ready)", "hwsim") + measure(v2.read, n=50))

    # NMEA: one 1 Hz epoch (RMC + GGA, ~140 bytes) per read
    epoch = rmc(43200, 5227112, 1303000) + gga(43200, 5227112, 1303000)
    u = NmeaUart(epoch)
    nm = NMEA(u, fc)

    def nmea_read():
        u.refill()
        nm.read()

    rows.append(("nmea", "read (RMC+GGA, %d B)" % len(epoch), "driver") + measure(nmea_read))
    rows.append(("nmea", "feed (same epoch)", "driver") + measure(lambda: nm.feed(epoch)))
    clk = VirtualClock()
    machine.use(clk)
    twin = GpsTwin(clk, position=lambda ms: (5227112, 1303000))
    machine.attach_uart(16, twin)  # the twin's TX on the UART's RX pin, as a board wires it
    uart = machine.UART(1, 9600, tx=17, rx=16, rxbuf=1024)
    nm2 = NMEA(uart, clk)

    def nmea_twin():
        clk.advance_ms(1000)
        nm2.read()

    rows.append(("nmea", "read 1 s of UART", "hwsim") + measure(nmea_twin, n=50))

    # BLE: one scan result, and closing a 256-slot window
    bc = BleCounter(fc, capacity=256)
    addrs = [bytes((0xC0, 1, 2, 3, i, 5)) for i in range(200)]
    k = [0]

    def ble_add():
        k[0] = (k[0] + 1) % 200
        bc.add(1, addrs[k[0]], -60)

    rows.append(("blecount", "scan result (HMAC-SHA256)", "driver") + measure(ble_add))
    rows.append(("blecount", "read (close window)", "driver") + measure(bc.read, n=20, warm=2))
    return rows


def main():
    rows = bench()
    impl = "%s %s" % (sys.implementation.name, ".".join(str(x) for x in sys.implementation.version[:3]))
    print("mobility drivers, %s, %d reads after warm-up" % (impl, N))
    print("%-10s %-28s %-7s %12s %12s" % ("driver", "operation", "bus", "heap B/read", "us/read"))
    for d, op, bus, hb, us in rows:
        hs = "n/a" if hb is None else "%.1f" % hb
        print("%-10s %-28s %-7s %12s %12.1f" % (d, op, bus, hs, us))
    out = [{"driver": d, "op": op, "bus": bus, "heap_bytes_per_read": hb, "us_per_read": round(us, 1)}
           for d, op, bus, hb, us in rows]
    print(json.dumps({"interpreter": impl, "results": out}))


main()

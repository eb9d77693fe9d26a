# Heap and time per read() of the I2C environment drivers (BME280, SHT4x, SCD4x, DNMS) under MicroPython.
#
# Run: .venv/bin/python bench/drivers_env.py   (re-runs itself under .venv/bin/micropython), or directly
#      MICROPYPATH=firmware:host_tools .venv/bin/micropython bench/drivers_env.py
# Each driver talks to a replay bus (register file / canned replies built once by the simulated twins)
# and a counter clock, both allocation-free, so the numbers are the driver's own: 10 warm-up reads, then
# gc.collect(), gc.disable(), 100 reads between two gc.mem_alloc() readings; time per read is the best of
# 3 runs of 500 reads (time.ticks_us; the virtual sleeps cost nothing, so this is CPU time on this host).
# Prints a table, then one JSON line. Note: the unix port has 63-bit small ints; on the ESP32 (31-bit)
# the 64-bit BME280 pressure formula allocates more (tests/host/test_drv_env_smallint.py proves the
# int32 paths never leave the small-int range).
import sys

READS = 100  # reads between the two gc.mem_alloc() readings
TIMED = 500  # reads per timing run (best of 3 runs)
WARMUP = 10


def _under_cpython():
    import json
    import os
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mp = os.path.join(os.path.dirname(sys.executable), "micropython")
    env = dict(os.environ, MICROPYPATH=os.path.join(root, "firmware") + ":" + os.path.join(root, "host_tools"))
    proc = subprocess.run([mp, "-X", "heapsize=2M", os.path.abspath(__file__)], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode == 0:
        json.loads(proc.stdout.strip().splitlines()[-1])  # the last line must be the JSON summary
    return proc.returncode


class _Clock:
    """time-module API on a counter: sleeps cost nothing, nothing is allocated."""

    def __init__(self):
        self.ms = 0

    def ticks_ms(self):
        return self.ms

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, b):
        return a + b

    def sleep_ms(self, n):
        self.ms += n

    def time(self):
        return self.ms // 1000


class _RegBus:
    """BME280 replay: a 256-byte register file copied from a twin; each burst read bumps the humidity LSB."""

    def __init__(self, regs):
        self.regs = bytearray(regs)

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        pass

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        r = self.regs
        if reg == 0xF7:
            r[0xFE] = (r[0xFE] + 1) & 0xFF
        for i in range(len(buf)):
            buf[i] = r[reg + i]


class _CmdBus:
    """Sensirion replay: the reply to the last command, from a table built once."""

    def __init__(self, replies):
        self.replies = replies
        self.cmd = 0

    def writeto(self, addr, buf, stop=True):
        self.cmd = (buf[0] << 8) | buf[1] if len(buf) > 1 else buf[0]

    def readfrom_into(self, addr, buf, stop=True):
        data = self.replies[self.cmd]
        for i in range(len(buf)):
            buf[i] = data[i]


def _bme280(p64):
    from cnode.drivers.bme280 import BME280
    from citynode.sim.hwsim.clock import VirtualClock
    from citynode.sim.hwsim.twin_bme280 import BME280Twin
    vc = VirtualClock(start_ms=36000000)
    twin = BME280Twin(vc)
    twin.write(b"\xf2\x01")
    twin.write(b"\xf4\x25")
    vc.advance_ms(20)
    twin.read(1)
    return BME280(_RegBus(twin.regs), _Clock(), stuck_reads=0, p64=p64)


def _sensirion(kind):
    from citynode.sim.hwsim.twin_sensirion import frame, f32_words, SHT4xTwin, SCD4xTwin
    from citynode.sim.hwsim.twin_bme280 import diurnal
    v = diurnal(36000000)
    if kind == "sht4x":
        from cnode.drivers.sht4x import SHT4x
        return SHT4x(_CmdBus({0xFD: frame(SHT4xTwin.raw_for(v))}), _Clock(), stuck_reads=0, reset=False)
    if kind == "scd4x":
        from cnode.drivers.scd4x import SCD4x
        bus = _CmdBus({0x21B1: b"", 0xE4B8: frame((0x8006,)), 0xEC05: frame(SCD4xTwin.raw_for(v))})
        drv = SCD4x(bus, _Clock(), th=True, stuck_reads=0)
        drv.start()
        return drv
    from cnode.drivers.dnms import DNMS
    w = f32_words(61.3) + f32_words(48.2) + f32_words(77.9)
    bus = _CmdBus({0x0003: b"", 0x0004: frame((1,)), 0x0005: frame(w)})
    return DNMS(bus, _Clock(), stuck_reads=0, reset=False)


def _measure(drv):
    """(heap bytes per read over READS reads with the GC off, best-of-3 microseconds per read)."""
    import gc
    import time
    for _ in range(WARMUP):
        drv.read()
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        for _ in range(READS):
            drv.read()
        a1 = gc.mem_alloc()
    finally:
        gc.enable()
    best = None
    for _ in range(3):
        gc.collect()
        t0 = time.ticks_us()
        for _ in range(TIMED):
            drv.read()
        us = time.ticks_diff(time.ticks_us(), t0) / TIMED
        best = us if best is None or us < best else best
    return (a1 - a0) / READS, best


def main():
    import json
    import cnode  # noqa: F401
    cases = (
        ("bme280 (p64, default)", lambda: _bme280(True)),
        ("bme280 (p32)", lambda: _bme280(False)),
        ("sht4x", lambda: _sensirion("sht4x")),
        ("scd4x (th)", lambda: _sensirion("scd4x")),
        ("dnms", lambda: _sensirion("dnms")),
    )
    rows = []
    for name, make in cases:
        drv = make()
        b, us = _measure(drv)
        rows.append({"driver": name, "bytes_per_read": b, "us_per_read": us, "values": list(drv.values)})
    print("%-22s %14s %12s  %s" % ("driver", "heap B/read", "us/read", "values"))
    for r in rows:
        print("%-22s %14.1f %12.1f  %s" % (r["driver"], r["bytes_per_read"], r["us_per_read"], r["values"]))
    print(json.dumps({"bench": "drivers_env", "interpreter": "micropython " + sys.version, "reads": READS,
                      "results": rows}))


if sys.implementation.name == "micropython":
    main()
elif __name__ == "__main__":
    sys.exit(_under_cpython())

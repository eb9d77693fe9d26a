# Every fault kind on every driver of an environment node: the faulty sensor's channels are flagged, the other
# sensors are still sampled in the same cycle, and the faulty one is back on the next (both runtimes).
from cnode.channels import F_MISSING
from cnode.drivers.battery import Battery
from cnode.drivers.bme280 import BME280
from cnode.drivers.sds011 import SDS011
from cnode.drivers.sht4x import SHT4x
from cnode.sampler import Sampler, Slot
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_adc import BatteryTwin
from citynode.sim.hwsim.twin_bme280 import BME280Twin
from citynode.sim.hwsim.twin_sensirion import SHT4xTwin
from citynode.sim.hwsim.twin_uart_pm import SDS011Twin


def _pm(ms):
    k = (ms // 300000) % 5  # a new value every 5-minute cycle (a constant one would count as stuck)
    return {"pm2_5": 7.5 + k, "pm10": 12.5 + k}


class Node:
    def __init__(self):
        self.clock = c = VirtualClock(start_s=800000000)
        machine.use(c)
        self.i2c = machine.I2C(0)
        self.bme = self.i2c.attach(0x76, BME280Twin(c))
        self.sht = self.i2c.attach(0x44, SHT4xTwin(c))
        self.sds = SDS011Twin(c, _pm)
        self.uart = machine.UART(1, 9600)
        self.uart.attach(self.sds)
        self.adc = machine.ADC(35)
        self.bat = BatteryTwin(100000, 100000, 3900)
        self.bat.attach(self.adc)
        self.drivers = {"bme280": BME280(self.i2c, c, stuck_reads=2), "sht4x": SHT4x(self.i2c, c, stuck_reads=2),
                        "sds011": SDS011(self.uart, c, stuck_after=2), "battery": Battery(self.adc, 100000, 100000)}
        self.sampler = Sampler([Slot(self.drivers["sds011"], warmup_ms=SDS011.warmup_ms),
                                Slot(self.drivers["bme280"]), Slot(self.drivers["sht4x"]),
                                Slot(self.drivers["battery"])], c)

    def cycle(self):
        s = self.sampler
        w = s.warmup_ms()
        if w:
            s.wake()
            self.clock.sleep_ms(w)
        failed = s.sample()
        self.clock.sleep_ms(300000 - w)
        return failed

    def channels_of(self, name):
        return [self.sampler.index(ch) for ch in self.drivers[name].channels]


FAULTS = (
    ("bme280", "bus", "nack"), ("bme280", "bus", "timeout"), ("bme280", "bus", "short"),
    ("bme280", "twin", "never_ready"), ("bme280", "twin", "stuck"),
    ("sht4x", "bus", "nack"), ("sht4x", "bus", "timeout"), ("sht4x", "bus", "short"),
    ("sht4x", "twin", "crc"), ("sht4x", "twin", "never_ready"), ("sht4x", "twin", "stuck"),
    ("sds011", "twin", "checksum"), ("sds011", "twin", "noise"), ("sds011", "twin", "truncate"),
    ("sds011", "twin", "disconnect"), ("sds011", "twin", "stuck"),
    ("battery", "twin", "disconnect"), ("battery", "twin", "floating"),
)


def _inject(n, name, where, kind):
    if where == "bus":
        n.i2c.inject({"bme280": 0x76, "sht4x": 0x44}[name], kind, 1)
    elif name == "bme280":
        n.bme.fault(kind, 3 if kind == "stuck" else 1)
    elif name == "sht4x":
        n.sht.fault(kind, 3 if kind == "stuck" else 1)
    elif name == "sds011":
        n.sds.inject(kind, 3 if kind == "stuck" else 1)
    else:
        n.bat.inject(kind, 16)


def _errors(n):
    return sum(s.errors for s in n.sampler.slots)


def test_every_fault_on_every_driver_leaves_the_cycle_going():
    for name, where, kind in FAULTS:
        n = Node()
        assert n.cycle() == 0, (name, kind)
        _inject(n, name, where, kind)
        before = _errors(n)
        for _ in range(3 if kind == "stuck" else 1):
            n.cycle()
        assert _errors(n) > before, (name, kind)  # noticed (in wake, read or sleep), never raised
        mine = n.channels_of(name)
        s = n.sampler
        shared = []
        for other in n.drivers:
            if other != name:
                shared.extend(n.drivers[other].channels)
        for i in mine:  # a reading is either there or flagged: never a silent gap
            if s.vals[i] is None:
                assert s.flags[i] & F_MISSING, (name, kind, s.names[i])
            else:
                assert not s.flags[i] & F_MISSING, (name, kind, s.names[i])
        # (the SDS011's one bad frame may be the reply to wake(); then the reading after it is good)
        if name != "sds011" and kind in ("nack", "timeout", "short", "never_ready", "crc", "disconnect"):
            unique = [i for i in mine if s.names[i] not in shared]
            assert all(s.vals[i] is None for i in unique), (name, kind)  # the read itself failed
        for other in n.drivers:
            if other == name:
                continue
            for i in n.channels_of(other):
                if s.names[i] in n.drivers[name].channels:
                    continue  # the same channel from the faulty sensor (temperature from BME280 and SHT4x)
                assert s.vals[i] is not None, (name, kind, "lost", other, s.names[i])
        for t in (n.bme, n.sht):
            t.clear_faults()
        n.sds.clear()
        n.bat.clear()
        assert n.cycle() == 0, (name, kind, "no recovery")
        for i in range(len(s.vals)):
            assert s.vals[i] is not None, (name, kind, s.names[i])


def test_fault_free_values_match_the_twins():
    n = Node()
    n.cycle()
    s = n.sampler
    assert s.vals[s.index("pm2_5")] == 75 and s.vals[s.index("pm10")] == 125  # k = 0 in the first cycle
    assert 3880 <= s.vals[s.index("battery")] <= 3920

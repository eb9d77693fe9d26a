# SHT4x driver: datasheet conversions, exact wire bytes, a synthetic day against the twin, faults and recovery.
import cnode  # noqa: F401
from cnode.drivers import sht4x
from cnode.drivers.errors import CRCError, SensorAbsent, SensorStuck, SensorTimeout
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_bme280 import constant
from citynode.sim.hwsim.twin_sensirion import SHT4xTwin
from fwtest import raises


def _setup(noise=0, **kw):
    clock = VirtualClock()
    i2c = machine.I2C(0)
    twin = i2c.attach(0x44, SHT4xTwin(clock, noise=noise))
    drv = sht4x.SHT4x(i2c, clock, **kw)
    return clock, i2c, twin, drv


def _close(drv, twin):
    tg = twin.target
    return abs(drv.values[0] - tg["temperature"] * 100) <= 1 and abs(drv.values[1] - tg["humidity"] * 10) <= 1


def test_conversions_datasheet():
    # datasheet 4.6: T = -45 + 175 * S / 65535, RH = -6 + 125 * S / 65535 (clamped 0..100)
    assert sht4x.temperature_centi(0) == -4500
    assert sht4x.temperature_centi(65535) == 13000
    assert sht4x.temperature_centi(26214) == 2500  # 175 * 26214 / 65535 = 70.0
    assert sht4x.temperature_centi(0xBEEF) == 8552  # 85.5218
    assert sht4x.humidity_deci(0xBEEF) == 872  # 87.2299
    assert sht4x.humidity_deci(32768) == 565  # 56.5009
    assert sht4x.humidity_deci(0) == 0  # -6 clamped
    assert sht4x.humidity_deci(65535) == 1000  # 119 clamped
    assert sht4x.humidity_deci(3146) == 0  # -0.0005 clamped


class _Replay:
    """Returns fixed reply bytes; records what the driver writes."""

    def __init__(self, reply):
        self.reply = reply
        self.sent = []

    def writeto(self, addr, buf, stop=True):
        self.sent.append((addr, bytes(buf)))

    def readfrom_into(self, addr, buf, stop=True):
        for i in range(len(buf)):
            buf[i] = self.reply[i]


def test_wire_bytes_and_reply_decoding():
    bus = _Replay(b"\xbe\xef\x92\x80\x00\xa2")  # T 0xBEEF, RH 0x8000 with their CRCs
    clock = VirtualClock()
    drv = sht4x.SHT4x(bus, clock, reset=False)
    drv.read()
    assert bus.sent == [(0x44, b"\xfd")]
    assert drv.raw == [0xBEEF, 0x8000]
    assert drv.values == [8552, 565]
    assert clock.monotonic_ms() == 9  # high-precision measurement: 8.3 ms max


def test_init_reads_serial():
    clock, i2c, twin, drv = _setup()
    assert twin.writes == [b"\x94", b"\x89"]  # soft reset, read serial
    assert drv.serial == 0x0C2F3A51


def test_synthetic_day_within_one_step():
    clock, i2c, twin, drv = _setup()
    for _ in range(144):
        clock.advance_ms(600000)
        drv.read()
        assert _close(drv, twin), (drv.values, twin.target)


def test_nack_then_recovery():
    clock, i2c, twin, drv = _setup()
    i2c.inject(0x44, "nack", 1)
    raises(SensorAbsent, drv.read)
    drv.read()
    assert _close(drv, twin)


def test_bad_crc_then_recovery():
    clock, i2c, twin, drv = _setup()
    twin.fault("crc", 1)
    raises(CRCError, drv.read)
    drv.read()
    assert _close(drv, twin)


def test_disconnect_mid_read_then_recovery():
    clock, i2c, twin, drv = _setup()
    clock.call_at_ms(clock.monotonic_ms() + 3, lambda: i2c.inject(0x44, "short", 1))
    raises(SensorAbsent, drv.read)
    drv.read()
    assert _close(drv, twin)


def test_never_ready_times_out_within_bound():
    clock, i2c, twin, drv = _setup()
    twin.fault("never_ready", 1)
    t0 = clock.monotonic_ms()
    raises(SensorTimeout, drv.read)
    assert clock.monotonic_ms() - t0 <= 20  # 9 ms wait + 10 ms of NACKed polls
    drv.read()
    assert _close(drv, twin)


def test_stuck_value_then_recovery():
    clock, i2c, twin, drv = _setup(stuck_reads=3)
    drv.read()
    twin.fault("stuck", 2)
    clock.advance_ms(60000)
    drv.read()
    clock.advance_ms(60000)
    raises(SensorStuck, drv.read)
    clock.advance_ms(60000)
    drv.read()
    assert _close(drv, twin)


def test_noisy_twin_constant_series_is_not_stuck():
    clock = VirtualClock()
    i2c = machine.I2C(0)
    i2c.attach(0x44, SHT4xTwin(clock, constant(temperature=21.0, humidity=50.0)))  # default 1-LSB noise
    drv = sht4x.SHT4x(i2c, clock)
    for _ in range(60):
        clock.advance_ms(60000)
        drv.read()
        assert abs(drv.values[0] - 2100) <= 1 and abs(drv.values[1] - 500) <= 1

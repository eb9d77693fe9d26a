# DNMS noise driver: wire bytes of the reference protocol, float32 words, a synthetic day, faults, recovery.
import cnode  # noqa: F401
from cnode.drivers import dnms
from cnode.drivers.errors import CRCError, FrameError, SensorAbsent, SensorStuck, SensorTimeout
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_sensirion import DNMSTwin, crc8
from fwtest import raises, unhex


def _setup(**kw):
    clock = VirtualClock()
    i2c = machine.I2C(0)
    twin = i2c.attach(0x55, DNMSTwin(clock))
    drv = dnms.DNMS(i2c, clock, **kw)
    return clock, i2c, twin, drv


def _close(drv, twin):
    tg = twin.target
    return (abs(drv.values[0] - tg["noise_laeq"] * 10) <= 1 and abs(drv.values[1] - tg["noise_lamax"] * 10) <= 1
            and abs(drv.lamin - tg["noise_lamin"] * 10) <= 1)


class _Replay:
    def __init__(self, replies):
        self.replies = list(replies)
        self.sent = []

    def writeto(self, addr, buf, stop=True):
        self.sent.append((addr, bytes(buf)))

    def readfrom_into(self, addr, buf, stop=True):
        r = self.replies.pop(0)
        for i in range(len(buf)):
            buf[i] = r[i]


def test_wire_bytes_and_float_words():
    # LAeq 55.5 (0x425E0000), LAmin 40.25 (0x42210000), LAmax 71.75 (0x428F8000), each word + CRC
    leq = unhex("425e" + "%02x" % crc8(b"\x42\x5e") + "000081" + "4221" + "%02x" % crc8(b"\x42\x21") +
                "000081" + "428f" + "%02x" % crc8(b"\x42\x8f") + "8000a2")
    bus = _Replay([b"\x00\x00\x81", b"\x00\x01\xb0", leq])  # not ready, ready, levels
    clock = VirtualClock()
    drv = dnms.DNMS(bus, clock, reset=False)
    drv.read()
    assert [s[1] for s in bus.sent] == [b"\x00\x03", b"\x00\x04", b"\x00\x04", b"\x00\x05"]
    assert all(s[0] == 0x55 for s in bus.sent)
    assert drv.values == [555, 718] and drv.lamin == 403  # 71.75 and 40.25 round half up


def test_init_resets_and_checks_version():
    clock, i2c, twin, drv = _setup()
    assert twin.writes[:2] == [b"\x00\x01", b"\x00\x02"]
    assert clock.monotonic_ms() >= 1000  # reference host waits 1 s after reset
    assert drv.version == "DNMS Version 2.4.5"
    twin.VERSION = "ABCD Version 2.4.5"  # nine words, not a DNMS
    raises(FrameError, drv.read_version)


def test_offset_correction():
    clock, i2c, twin, drv = _setup(offset=-15)
    clock.advance_ms(60000)
    drv.read()
    assert abs(drv.values[0] + 15 - twin.target["noise_laeq"] * 10) <= 1


def test_synthetic_day_within_one_step():
    clock, i2c, twin, drv = _setup()
    for _ in range(144):
        clock.advance_ms(600000)
        drv.read()
        assert _close(drv, twin), (drv.values, drv.lamin, twin.target)
        assert drv.lamin <= drv.values[0] <= drv.values[1]


def test_data_ready_waits_for_the_block():
    clock, i2c, twin, drv = _setup()
    clock.advance_ms(60010)
    t0 = clock.monotonic_ms()
    drv.read()
    assert clock.monotonic_ms() - t0 <= 130  # the 125 ms block in progress, polled every 5 ms


def test_nack_then_recovery():
    clock, i2c, twin, drv = _setup()
    clock.advance_ms(60000)
    i2c.inject(0x55, "nack", 1)
    raises(SensorAbsent, drv.read)
    clock.advance_ms(60000)
    drv.read()
    assert _close(drv, twin)


def test_bad_crc_then_recovery():
    clock, i2c, twin, drv = _setup()
    clock.advance_ms(60000)
    twin.fault("crc", 1)
    raises(CRCError, drv.read)
    clock.advance_ms(60000)
    drv.read()
    assert _close(drv, twin)


def test_disconnect_mid_read_then_recovery():
    clock, i2c, twin, drv = _setup()
    clock.advance_ms(60000)
    clock.call_at_ms(clock.monotonic_ms() + 2, lambda: i2c.inject(0x55, "short", 1))
    raises(SensorAbsent, drv.read)
    clock.advance_ms(60000)
    drv.read()
    assert _close(drv, twin)


def test_never_ready_times_out_within_bound():
    clock, i2c, twin, drv = _setup()
    clock.advance_ms(60000)
    twin.fault("never_ready", 1)
    t0 = clock.monotonic_ms()
    raises(SensorTimeout, drv.read)
    assert 200 <= clock.monotonic_ms() - t0 <= 210
    clock.advance_ms(60000)
    drv.read()
    assert _close(drv, twin)


def test_stuck_value_then_recovery():
    clock, i2c, twin, drv = _setup(stuck_reads=3)
    clock.advance_ms(60000)
    drv.read()
    twin.fault("stuck", 2)
    clock.advance_ms(60000)
    drv.read()
    clock.advance_ms(60000)
    raises(SensorStuck, drv.read)
    clock.advance_ms(60000)
    drv.read()
    assert _close(drv, twin)

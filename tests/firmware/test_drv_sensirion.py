# Sensirion CRC-8 and word framing: published check value, SCD30 interface-description bytes, errors.
import cnode  # noqa: F401
from cnode.drivers import sensirion
from cnode.drivers.dnms import f32_tenths
from cnode.drivers.errors import CRCError, SensorAbsent, SensorTimeout
from citynode.sim.hwsim.twin_sensirion import crc8 as twin_crc8
from fwtest import Lcg, raises, unhex

# SCD30 interface description transactions (driver-vectors "scd30_i2c"): three float32 values, each as
# two words + CRC; CO2 439.0 ppm, T 27.2 degC, RH 48.8 %RH rounded to 0.1
SCD30_MEASUREMENT = "43dbcb8c2e8f41d970e7fff54243bf3a1b74"


def test_crc_check_value():
    assert sensirion.crc8(b"\xbe\xef") == 0x92  # Sensirion datasheets: CRC(0xBEEF) = 0x92
    assert sensirion.crc8(b"\x00\x00") == 0x81  # SCD30 "start continuous measurement" argument 0x0000
    assert sensirion.crc8(b"\x00\x01") == 0xB0  # SCD30 data ready reply 0x0001
    assert sensirion.crc8(b"\x12\xbe\xef\x34", 1, 3) == 0x92  # start/end select the range


def test_crc_table_equals_bitwise_definition():
    rng = Lcg(31)
    for _ in range(200):
        b = bytes([rng.randint(0, 255), rng.randint(0, 255)])
        assert sensirion.crc8(b) == twin_crc8(b)


def test_pack_word():
    buf = bytearray(8)
    assert sensirion.pack_word(buf, 2, 0xBEEF) == 5
    assert bytes(buf[2:5]) == b"\xbe\xef\x92"
    buf = bytearray(5)
    buf[0], buf[1] = 0x00, 0x10  # SCD30 start continuous measurement, ambient pressure 0
    sensirion.pack_word(buf, 2, 0)
    assert bytes(buf) == unhex("0010000081")


def test_unpack_scd30_measurement_and_float_words():
    b = unhex(SCD30_MEASUREMENT)
    w = [sensirion.unpack_word(b, 3 * i) for i in range(6)]
    assert w == [0x43DB, 0x8C2E, 0x41D9, 0xE7FF, 0x4243, 0x3A1B]
    # within one 0.1 step of the vector's rounded values (0x43DB8C2E is 439.095, so 4391 tenths)
    assert abs(f32_tenths(w[0], w[1]) - 4390) <= 1
    assert f32_tenths(w[2], w[3]) == 272
    assert f32_tenths(w[4], w[5]) == 488


def test_unpack_bad_crc_raises():
    b = bytearray(unhex(SCD30_MEASUREMENT))
    b[5] ^= 0x01  # second word's CRC
    assert sensirion.unpack_word(b, 0) == 0x43DB
    raises(CRCError, sensirion.unpack_word, b, 3)
    b = bytearray(b"\xbe\xef\x92")
    b[0] ^= 0x80  # data bit flipped, CRC intact
    raises(CRCError, sensirion.unpack_word, b, 0)


def test_f32_tenths_edges():
    assert f32_tenths(0x0000, 0x0000) == 0  # +0.0
    assert f32_tenths(0x3F80, 0x0000) == 10  # 1.0
    assert f32_tenths(0xBF80, 0x0000) == -10  # -1.0
    assert f32_tenths(0x3D4C, 0xCCCD) == 1  # 0.05 (float32 0.0500000007) rounds up
    assert f32_tenths(0x4B80, 0x0000) is None  # 2**24: beyond any level
    assert f32_tenths(0x7F80, 0x0000) is None  # +inf
    assert f32_tenths(0x7FC0, 0x0000) is None  # NaN
    assert f32_tenths(0x2000, 0x0000) == 0  # 1e-19


class _Bus:
    """An I2C double that raises a given OSError errno on every transfer."""

    def __init__(self, errno):
        self.errno = errno

    def writeto(self, addr, buf, stop=True):
        raise OSError(self.errno)

    def readfrom_into(self, addr, buf, stop=True):
        raise OSError(self.errno)


def test_bus_errors_map_to_driver_errors():
    from citynode.sim.hwsim.clock import VirtualClock
    clock = VirtualClock()
    dev = sensirion.SensirionDevice(_Bus(19), clock, 0x44)
    raises(SensorAbsent, dev.write_cmd, 0x1234)
    raises(SensorAbsent, dev.read_words, 1)
    dev = sensirion.SensirionDevice(_Bus(116), clock, 0x44)
    raises(SensorTimeout, dev.write_cmd8, 0xFD)
    dev = sensirion.SensirionDevice(_Bus(5), clock, 0x44)  # EIO: the device went away mid-transfer
    raises(SensorAbsent, dev.read_words, 2)
    dev = sensirion.SensirionDevice(_Bus(19), clock, 0x44)
    t0 = clock.monotonic_ms()
    raises(SensorTimeout, dev.read_words_busy, 2, 10)  # NACKed reads = busy, bounded
    assert 10 <= clock.monotonic_ms() - t0 <= 11

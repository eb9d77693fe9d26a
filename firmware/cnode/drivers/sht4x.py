# Sensirion SHT4x temperature / humidity (I2C 0x44): high-precision single shot, CRC-checked, integer maths.
#
# Datasheet: Sensirion SHT4x v6.6. Command set 4.5 (Table 7): 0xFD measure T & RH high precision
# (max 8.3 ms, Table 4), 0x89 read serial number, 0x94 soft reset (max 1 ms). Reply 6 bytes:
# T msb lsb CRC, RH msb lsb CRC (4.4). While a measurement runs the sensor NACKs its read header (4.3).
# Conversion 4.6: T = -45 + 175 * S_T / 65535 degC, RH = -6 + 125 * S_RH / 65535 %RH, RH clamped to 0..100.
from micropython import const

from cnode.drivers.errors import count_stuck, same_bytes
from cnode.drivers.sensirion import SensirionDevice

ADDR = const(0x44)
_CMD_MEASURE_HIGH = const(0xFD)
_CMD_READ_SERIAL = const(0x89)
_CMD_SOFT_RESET = const(0x94)
_MEAS_WAIT_MS = const(9)  # 8.3 ms max, rounded up
_MEAS_BOUND_MS = const(10)  # further NACKed polls allowed before SensorTimeout
_RESET_MS = const(1)


def temperature_centi(s):
    """S_T -> 0.01 degC, rounded: 17500*S/65535 = 3500*S/13107 (stays below 2**30)."""
    return (7000 * s + 13107) // 26214 - 4500


def humidity_deci(s):
    """S_RH -> 0.1 %RH, rounded and clamped 0..1000: 1250*S/65535 = 250*S/13107."""
    v = (500 * s + 13107) // 26214 - 60
    if v < 0:
        return 0
    if v > 1000:
        return 1000
    return v


class SHT4x(SensirionDevice):
    """channels temperature (0.01 degC), humidity (0.1 %RH). raw holds the last ticks (S_T, S_RH)."""

    NAME = "SHT4x"

    def __init__(self, i2c, clock, addr=ADDR, stuck_reads=20, reset=True):
        SensirionDevice.__init__(self, i2c, clock, addr)
        self.channels = ("temperature", "humidity")
        self.values = [None, None]  # type: list
        self.raw = [0, 0]
        self.serial = None
        self._last = bytearray(6)
        self._same = 0
        self._stuck_n = stuck_reads
        if reset:
            self.init()

    def init(self):
        """Soft reset (4.5) and read the serial number, which proves the device and its CRCs."""
        self.write_cmd8(_CMD_SOFT_RESET)
        self._clock.sleep_ms(_RESET_MS)
        self.query(_CMD_READ_SERIAL, 2, 1, True)
        self.serial = (self.words[0] << 16) | self.words[1]
        return self.serial

    def read(self):
        self.write_cmd8(_CMD_MEASURE_HIGH)
        self._clock.sleep_ms(_MEAS_WAIT_MS)
        self.read_words_busy(2, _MEAS_BOUND_MS)
        count_stuck(self, same_bytes(self.rx, self._last, 6), "SHT4x")
        w = self.words
        self.raw[0] = w[0]
        self.raw[1] = w[1]
        self.values[0] = temperature_centi(w[0])
        self.values[1] = humidity_deci(w[1])

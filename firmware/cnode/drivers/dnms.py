# DNMS noise module (Teensy + ICS-43434 MEMS microphone, I2C 0x55): LAeq, LAmin, LAmax per interval.
#
# There is no datasheet; the protocol is the one of the DNMS firmware and its reference host driver
# (github.com/hbitter/DNMS: Teensy DNMS_V2.4.5.ino and NodeMCU dnms_i2c.cpp): Sensirion-style 16-bit
# commands, replies as big-endian words each followed by a Sensirion CRC-8. Commands: 0x0001 reset,
# 0x0002 read version (ASCII "DNMS Version x.y.z", 9 words), 0x0003 calculate LEQ (closes the interval
# since the last 0x0003), 0x0004 read data ready (1 word, non-zero when ready: the module finishes its
# current 125 ms fast-weighting block first), 0x0005 read LEQ (6 words: LAeq, LAmin, LAmax as IEEE-754
# float32, high word first). The reference host waits 1 s after reset and polls data ready.
# Floats are decoded to integer tenths of a dB without float objects (nothing allocated per read).
from micropython import const

from cnode.drivers.errors import FrameError, SensorTimeout, count_stuck, same_bytes
from cnode.drivers.sensirion import SensirionDevice

ADDR = const(0x55)
_CMD_RESET = const(0x0001)
_CMD_READ_VERSION = const(0x0002)
_CMD_CALCULATE_LEQ = const(0x0003)
_CMD_READ_DATA_READY = const(0x0004)
_CMD_READ_LEQ = const(0x0005)
_VERSION_WORDS = const(9)
_RESET_MS = const(1000)
_READY_BOUND_MS = const(200)  # one 125 ms block plus margin
_POLL_MS = const(5)


def f32_tenths(hi, lo):
    """IEEE-754 binary32 given as two words -> round(value * 10) as an int; None for NaN/inf or >= 2**24."""
    e = (hi >> 7) & 0xFF
    if e == 0xFF:
        return None
    if e == 0:  # zero or subnormal: below 1e-37
        return 0
    sh = 150 - e  # value = m * 2**-sh, m has 24 bits
    if sh <= 0:
        return None
    if sh >= 29:  # m * 10 < 2**28: rounds to 0
        return 0
    v = ((((hi & 0x7F) << 16) | lo | 0x800000) * 10 + (1 << (sh - 1))) >> sh
    return -v if hi & 0x8000 else v


class DNMS(SensirionDevice):
    """channels noise_laeq, noise_lamax (0.1 dBA); self.lamin holds LAmin. offset: correction in 0.1 dB
    added to all three (the reference firmware's "dnms_correction")."""

    NAME = "DNMS"

    def __init__(self, i2c, clock, addr=ADDR, offset=0, stuck_reads=20, reset=True):
        SensirionDevice.__init__(self, i2c, clock, addr)
        self.channels = ("noise_laeq", "noise_lamax")
        self.values = [None, None]  # type: list
        self.lamin = None
        self.offset = offset
        self.version = None
        self._last = bytearray(18)
        self._same = 0
        self._stuck_n = stuck_reads
        if reset:
            self.init()

    def init(self):
        """Reset, wait 1 s, read and check the version string ("DNMS..."), as the reference host does."""
        self.write_cmd(_CMD_RESET)
        self._clock.sleep_ms(_RESET_MS)
        return self.read_version()

    def read_version(self):
        self.query(_CMD_READ_VERSION, _VERSION_WORDS, 0)
        w = self.words
        s = "".join(chr(w[i] >> 8) + chr(w[i] & 0xFF) for i in range(_VERSION_WORDS))
        s = s.split("\x00")[0]
        if not s.startswith("DNMS"):
            raise FrameError("DNMS: unexpected version string %r" % s)
        self.version = s
        return s

    def read(self):
        """Close the interval (0x0003), wait for data ready (bounded), read LAeq/LAmin/LAmax."""
        clock = self._clock
        self.write_cmd(_CMD_CALCULATE_LEQ)
        t0 = clock.ticks_ms()
        while True:
            clock.sleep_ms(_POLL_MS)
            self.query(_CMD_READ_DATA_READY, 1, 0)
            if self.words[0]:
                break
            if clock.ticks_diff(clock.ticks_ms(), t0) >= _READY_BOUND_MS:
                raise SensorTimeout("DNMS: no data ready within %d ms" % _READY_BOUND_MS)
        self.query(_CMD_READ_LEQ, 6, 0)
        count_stuck(self, same_bytes(self.rx, self._last, 18), "DNMS")
        w = self.words
        laeq = f32_tenths(w[0], w[1])
        lamin = f32_tenths(w[2], w[3])
        lamax = f32_tenths(w[4], w[5])
        if laeq is None or lamin is None or lamax is None:
            raise FrameError("DNMS: level is not a finite number")
        o = self.offset
        self.values[0] = laeq + o
        self.values[1] = lamax + o
        self.lamin = lamin + o

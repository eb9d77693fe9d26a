# PMS5003 PM1/PM2.5/PM10 sensor on a UART (9600 8N1): passive (or active) mode, sleep/wake.
#
# Source: Plantower "PMS5003 series data manual" V2.3 (2016), appendix I (active mode frame) and
# appendix II (passive mode host commands), cited as MAN below.
#   data frame, 32 bytes: 42 4D, frame length 00 1C (= 2 x 13 + 2), 13 big-endian uint16 data, check code
#     = 16-bit sum of every byte before it. Data 1..3: PM1.0, PM2.5, PM10 "CF=1, standard particle";
#     data 4..6: PM1.0, PM2.5, PM10 "under atmospheric environment" (ug/m3); 7..12 particle counts; 13 reserved.
#   host command, 7 bytes: 42 4D CMD DATAH DATAL LRCH LRCL, LRC = 16-bit sum of the first five bytes.
#     E2 00 00 read in passive mode; E1 00 00/01 passive/active mode; E4 00 00/01 sleep/wake-up.
# Channels pm1, pm2_5, pm10 come from data 4..6 (atmospheric) in whole ug/m3, x 10 for the channels'
# 0.1 ug/m3 resolution. Sensors answer E1/E4 with an 8-byte frame 42 4D 00 04 CMD DATA CHK (not in MAN):
# it is recognised by its length and skipped.
#
# Errors: nothing heard -> SensorAbsent; frame started, not finished -> SensorTimeout; bytes without a
# frame -> FrameError; check code mismatch -> CRCError (values keep the last good reading).
from micropython import const

from cnode.drivers.errors import CRCError
from cnode.drivers.uartsensor import UartSensor

_START1 = const(0x42)
_START2 = const(0x4D)
_CMD_READ_PASSIVE = const(0xE2)  # MAN appendix II
_CMD_CHANGE_MODE = const(0xE1)  # data 0 = passive, 1 = active
_CMD_SLEEP_SET = const(0xE4)  # data 0 = sleep, 1 = wake-up
_LEN_DATA = const(28)  # frame length of a data frame
_LEN_ACK = const(4)  # frame length of a command acknowledgement
_FRAME = const(32)
_STEP_MS = const(5)


def command(buf, cmd, data):
    """Fill the 7-byte buf with a host command (MAN appendix II); returns buf."""
    buf[0] = _START1
    buf[1] = _START2
    buf[2] = cmd
    buf[3] = (data >> 8) & 0xFF
    buf[4] = data & 0xFF
    s = _START1 + _START2 + cmd + buf[3] + buf[4]
    buf[5] = s >> 8
    buf[6] = s & 0xFF
    return buf


class PMS5003(UartSensor):
    channels = ("pm1", "pm2_5", "pm10")
    _name = "PMS5003"
    warmup_ms = 30000  # MAN: "stable data should be got at least 30 seconds after the sensor wakeup"

    def __init__(self, uart, clock, passive=True, timeout_ms=0, set_pin=None, stuck_after=0):
        """uart: a ready UART at 9600 8N1; clock: time-like; set_pin: optional SET pin (high = work)."""
        # active frames come every 2.3 s
        UartSensor.__init__(self, uart, clock, timeout_ms or (1000 if passive else 3000), stuck_after, 3)
        self.passive = passive
        self.set_pin = set_pin
        self.ready = False
        self._tx = bytearray(7)
        self._read_cmd = bytes(command(bytearray(7), _CMD_READ_PASSIVE, 0))
        self._f = bytearray(_FRAME)
        self._need = _FRAME  # the length of the frame being read (_part: its bytes so far)

    def setup(self):
        """Select passive or active mode (the sensor powers up in active mode)."""
        self.uart.write(command(self._tx, _CMD_CHANGE_MODE, 0 if self.passive else 1))
        self.clock.sleep_ms(50)
        self.ready = True

    def read(self):
        """One reading into self.values (pm1, pm2_5, pm10 at 0.1 ug/m3)."""
        if not self.ready:
            self.setup()
        self._drain()
        if self.passive:
            self.uart.write(self._read_cmd)
        self._need = _FRAME
        self._collect(_STEP_MS)
        f = self._f
        self._keep(((f[10] << 8) | f[11]) * 10, ((f[12] << 8) | f[13]) * 10, ((f[14] << 8) | f[15]) * 10)

    def sleep(self):
        """Fan and laser off (MAN appendix II, E4 00 00; and SET low if wired)."""
        self.uart.write(command(self._tx, _CMD_SLEEP_SET, 0))
        if self.set_pin is not None:
            self.set_pin.value(0)

    def wake(self):
        """Fan and laser on; readings are stable warmup_ms later. The mode is set again at the next read."""
        if self.set_pin is not None:
            self.set_pin.value(1)
        self.uart.write(command(self._tx, _CMD_SLEEP_SET, 1))
        self.ready = False

    def _feed(self, chunk, n):
        # frames start 42 4D; a data frame ends in its check code, a command acknowledgement is skipped (and is no
        # sign of life for a read)
        f = self._f
        p = self._part
        need = self._need
        skip = 0
        for j in range(n):
            b = chunk[j]
            if p == 0:
                if b == _START1:
                    f[0] = b
                    p = 1
                continue
            if p == 1:
                p = 2 if b == _START2 else (1 if b == _START1 else 0)
                f[1] = b
                continue
            f[p] = b
            p += 1
            if p == 4:
                ln = (f[2] << 8) | f[3]
                if ln == _LEN_DATA:
                    need = _FRAME
                elif ln == _LEN_ACK:
                    need = 8
                else:
                    p = 0
            elif p == need:
                p = 0
                if need != _FRAME:
                    skip += need
                    continue
                s = 0
                for i in range(_FRAME - 2):
                    s += f[i]
                if (s & 0xFFFF) != ((f[30] << 8) | f[31]):
                    self.errors += 1
                    raise CRCError("PMS5003 check code")
                return -1
        self._part = p
        self._need = need
        return skip

# SPS30 PM1/PM2.5/PM10 sensor over UART SHDLC (115200 8N1): measure, read, sleep/wake, device info, reset.
#
# Source: Sensirion "Datasheet SPS30" v1.0 (March 2020), section 5, cited as DS below.
#   MOSI frame: 7E ADR CMD LEN DATA.. CHK 7E;  MISO frame: 7E ADR CMD STATE LEN DATA.. CHK 7E   (DS 5.1)
#   CHK = inverted low byte of the sum of every byte between the markers, built before byte stuffing and
#   checked after removing it; stuffing (DS 5.2 table 5): 7E -> 7D 5E, 7D -> 7D 5D, 11 -> 7D 31, 13 -> 7D 33.
#   STATE: bit 7 = device error flag (read the status register), bits 6..0 = execution error code
#   (0x01 wrong data length, 0x02 unknown command, 0x03 no access right, 0x04 illegal parameter,
#   0x28 argument out of range, 0x43 command not allowed in current state).
# Output format (DS 5.3.1): 0x05 = big-endian uint16 (mass concentration in whole ug/m3), 0x03 = big-endian
# IEEE754 float. The default is uint16, no floats: channels pm1, pm2_5, pm10 are at 0.1 ug/m3, so the
# values are the sensor's ug/m3 x 10 (resolution 1 ug/m3, the datasheet's mass concentration resolution).
# With FORMAT_FLOAT the float bits are decoded with integer maths to 0.1 ug/m3, still without floats.
#
# Errors: nothing heard -> SensorAbsent; frame started, not finished -> SensorTimeout; bytes that never
# form a frame for our command, or a non-zero execution error -> FrameError; checksum -> CRCError.
from micropython import const

from cnode.drivers.errors import CRCError, FrameError, SensorTimeout
from cnode.drivers.uartsensor import UartSensor

_MARK = const(0x7E)
_ESC = const(0x7D)
_ADR = const(0x00)  # DS 5.1: the SPS30's SHDLC address is always 0

_CMD_START_MEASUREMENT = const(0x00)  # DS 5.3.1, idle mode only
_CMD_STOP_MEASUREMENT = const(0x01)  # DS 5.3.2, measurement mode only
_CMD_READ_MEASURED_VALUES = const(0x03)  # DS 5.3.3, empty reply when no new values
_CMD_SLEEP = const(0x10)  # DS 5.3.4, idle mode only; UART off until wake-up
_CMD_WAKE_UP = const(0x11)  # DS 5.3.5, after a low pulse on RX (we send 0xFF)
_CMD_DEVICE_INFORMATION = const(0xD0)  # DS 5.3.8: 0x00 product type, 0x03 serial number
_CMD_DEVICE_RESET = const(0xD3)  # DS 5.3.11

FORMAT_FLOAT = const(0x03)
FORMAT_UINT16 = const(0x05)
_ERR_STATE = const(0x43)  # command not allowed in current state

_STEP_MS = const(2)  # 47 bytes take 4 ms at 115200 baud
_RETRY_MS = const(100)  # between read attempts while the sensor has no new values


def checksum(buf, start, end):
    """Inverted low byte of the sum of buf[start:end] (DS 5.2)."""
    s = 0
    for i in range(start, end):
        s += buf[i]
    return ~s & 0xFF


def build(cmd, data=b""):
    """A stuffed MOSI frame for cmd with data (bytes). Allocates: use it outside the read path.
    Every byte between the markers is stuffed, the command too: wake-up 0x11 goes out as 7D 31, as
    Sensirion's own SHDLC driver sends it (DS 5.3.5 prints it unstuffed; the sensor takes both)."""
    body = bytearray([_ADR, cmd, len(data)]) + data
    body.append(checksum(body, 0, len(body)))
    out = bytearray([_MARK])
    for b in body:
        if b == 0x7E or b == 0x7D or b == 0x11 or b == 0x13:
            out.append(_ESC)
            out.append(b ^ 0x20)
        else:
            out.append(b)
    out.append(_MARK)
    return bytes(out)


def float10(b, i):
    """round(10 * x) for the big-endian IEEE754 float x at b[i:i+4], in integers; negatives give 0."""
    e = ((b[i] & 0x7F) << 1) | (b[i + 1] >> 7)
    if e == 0xFF:
        raise FrameError("SPS30 float not finite")
    if b[i] & 0x80 or e < 100:  # negative, zero, or below 1e-7
        return 0
    m = (((b[i + 1] & 0x7F) << 16) | (b[i + 2] << 8) | b[i + 3] | 0x800000) * 10
    sh = e - 150  # x = mantissa * 2**(e - 150)
    if sh >= 0:
        return m << sh
    return ((m >> (-sh - 1)) + 1) >> 1


class SPS30(UartSensor):
    channels = ("pm1", "pm2_5", "pm10")
    _name = "SPS30"
    warmup_ms = 30000  # DS 1.1 table 1 "start-up time": 8 s, up to 30 s at low concentrations

    def __init__(self, uart, clock, fmt=FORMAT_UINT16, timeout_ms=1000, read_timeout_ms=2500,
                 stuck_after=0):
        """uart: a ready UART at 115200 8N1; clock: time-like."""
        if fmt != FORMAT_UINT16 and fmt != FORMAT_FLOAT:
            raise ValueError("fmt")
        UartSensor.__init__(self, uart, clock, timeout_ms, stuck_after, 3)  # timeout_ms: for one reply
        self.fmt = fmt
        self.read_timeout_ms = read_timeout_ms  # for new values to appear
        self.measuring = False
        self.device_error = False  # bit 7 of the last STATE byte
        self.state = 0  # execution error code of the last reply
        self._rx = bytearray(64)  # unstuffed MISO frame, without the markers
        self._n = 0  # its length (so far, while one is read)
        self._read_cmd = build(_CMD_READ_MEASURED_VALUES)
        self._cmd = 0  # the command whose answer is awaited
        self._in = False  # inside a frame (_part: one answering _cmd)
        self._esc = False  # after an escape byte

    # --- public -----------------------------------------------------------------------------------
    def start(self):
        """Start measurement mode with our output format (fan on)."""
        self._xfer(build(_CMD_START_MEASUREMENT, bytes([0x01, self.fmt])), _CMD_START_MEASUREMENT)
        self.measuring = True

    def stop(self):
        self._xfer(build(_CMD_STOP_MEASUREMENT), _CMD_STOP_MEASUREMENT)
        self.measuring = False

    def read(self):
        """One reading into self.values (pm1, pm2_5, pm10 at 0.1 ug/m3); starts measuring if needed."""
        if not self.measuring:
            self.start()
        c = self.clock
        t0 = c.ticks_ms()
        while True:
            try:
                self._xfer(self._read_cmd, _CMD_READ_MEASURED_VALUES)
            except FrameError:
                if self.state == _ERR_STATE:  # not measuring (reset or power cycle): start again next time
                    self.measuring = False
                raise
            n = self._rx[3]
            if n:
                break
            if c.ticks_diff(c.ticks_ms(), t0) >= self.read_timeout_ms:
                self.errors += 1
                raise SensorTimeout("SPS30 no new values")
            c.sleep_ms(_RETRY_MS)
        r = self._rx
        if n == 20 and self.fmt == FORMAT_UINT16:  # DS 5.3.3: PM1.0, PM2.5, PM4.0, PM10, NC.., size
            a = ((r[4] << 8) | r[5]) * 10
            b = ((r[6] << 8) | r[7]) * 10
            d = ((r[10] << 8) | r[11]) * 10
        elif n == 40 and self.fmt == FORMAT_FLOAT:
            a = float10(r, 4)
            b = float10(r, 8)
            d = float10(r, 16)
        else:
            self.errors += 1
            raise FrameError("SPS30 %d data bytes" % n)
        self._keep(a, b, d)

    def sleep(self):
        """Stop measuring and sleep (DS 5.3.4; fan, laser and UART off)."""
        if self.measuring:
            self.stop()
        self._xfer(build(_CMD_SLEEP), _CMD_SLEEP)

    def wake(self):
        """Wake up (0xFF as the low pulse on RX, then the command, DS 5.3.5) and start measuring."""
        try:
            self._xfer(b"\xff" + build(_CMD_WAKE_UP), _CMD_WAKE_UP)
        except FrameError:
            if self.state != _ERR_STATE:  # 0x43: it was not asleep
                raise
        self.measuring = False
        self.start()

    def reset(self):
        self._xfer(build(_CMD_DEVICE_RESET), _CMD_DEVICE_RESET)
        self.measuring = False

    def info(self, what=0x03):
        """Device information string: 0x00 product type, 0x03 serial number (DS 5.3.8)."""
        self._xfer(build(_CMD_DEVICE_INFORMATION, bytes([what])), _CMD_DEVICE_INFORMATION)
        r = self._rx
        end = 4
        while end < 4 + r[3] and r[end]:
            end += 1
        return bytes(r[4:end]).decode()

    # --- protocol ---------------------------------------------------------------------------------
    def _xfer(self, frame, cmd):
        """Send a MOSI frame, wait for the MISO frame answering cmd (in self._rx), check STATE."""
        self._drain()
        self.uart.write(frame)
        self._cmd = cmd
        self._in = False
        self._esc = False
        self._n = 0
        self._collect(_STEP_MS)
        st = self._rx[2]
        self.device_error = bool(st & 0x80)
        self.state = st & 0x7F
        if self.state:
            self.errors += 1
            raise FrameError("SPS30 command 0x%02x state 0x%02x" % (cmd, self.state))

    def _feed(self, chunk, n):
        # unstuff into self._rx, from the start marker; -1 at the end marker of a frame answering self._cmd
        r = self._rx
        cap = len(r)
        cmd = self._cmd
        inside = self._in
        esc = self._esc
        k = self._n
        for j in range(n):
            b = chunk[j]
            if b == _MARK:
                if inside and k >= 5 and r[0] == _ADR and r[1] == cmd and r[3] == k - 5:
                    if checksum(r, 0, k - 1) != r[k - 1]:
                        self.errors += 1
                        raise CRCError("SPS30 checksum")
                    self._n = k
                    return -1
                inside = True  # an end marker may also open the next frame
                esc = False
                k = 0
            elif not inside:
                continue
            elif b == _ESC:
                esc = True
            else:
                if esc:
                    esc = False
                    if b != 0x5E and b != 0x5D and b != 0x31 and b != 0x33:
                        inside = False
                        continue
                    b ^= 0x20
                if k < cap:
                    r[k] = b
                    k += 1
                else:
                    inside = False
        self._in = inside
        self._esc = esc
        self._n = k
        self._part = inside and k >= 2 and r[0] == _ADR and r[1] == cmd
        return 0

# SDS011 PM2.5/PM10 sensor on a UART (9600 8N1): query or active reporting, sleep/work, working period.
#
# Source: Nova Fitness "Laser Dust Sensor Control Protocol V1.3" (2015-07-20), cited as PROT below.
#   data frame, sensor -> host (PROT 3.2), 10 bytes:  AA C0 PM25lo PM25hi PM10lo PM10hi ID1 ID2 CHK AB
#       CHK = low 8 bits of the sum of bytes 2..7; PM = raw / 10 ug/m3
#   command, host -> sensor (PROT 1), 19 bytes:       AA B4 CMD d2..d13 ID1 ID2 CHK AB
#       CHK = low 8 bits of the sum of bytes 2..16 (every data byte, not head, command id or tail);
#       ID1 ID2 = FF FF addresses every sensor on the line
#   reply to a setting command (PROT 3.1, 3.4, 3.5): AA C5 CMD d2 d3 d4 ID1 ID2 CHK AB
# The device ID printed in PROT ("A160") is ID1 ID2 in wire order; `device_id` keeps that order.
# Channels pm2_5 and pm10 have resolution 0.1 ug/m3, so the raw value IS the channel integer.
#
# Errors (cnode.drivers.errors): no byte at all before the deadline -> SensorAbsent; a frame head seen but
# no complete frame -> SensorTimeout (truncated); only bytes that never form a frame -> FrameError;
# a complete frame whose checksum fails -> CRCError (the frame is dropped whole, values keep the last good
# reading); `stuck_after` identical readings in a row -> SensorStuck.
from micropython import const

from cnode.drivers.errors import CRCError
from cnode.drivers.uartsensor import UartSensor

_HEAD = const(0xAA)
_TAIL = const(0xAB)
_CMD_ID = const(0xB4)  # PROT 1: command id of every host -> sensor packet
_DATA_ID = const(0xC0)  # PROT 3.2: measurement frame
_REPLY_ID = const(0xC5)  # PROT 3.1/3.4/3.5: reply to a setting

_CMD_REPORTING_MODE = const(2)  # PROT 3.1 Set data reporting mode: d3 0 = active, 1 = query
_CMD_QUERY_DATA = const(4)  # PROT 3.2 Query data command
_CMD_SLEEP_WORK = const(6)  # PROT 3.4 Set sleep and work: d3 0 = sleep, 1 = work
_CMD_WORKING_PERIOD = const(8)  # PROT 3.5 Set working period: d3 0 = continuous, 1..30 minutes
_OP_QUERY = const(0)  # d2 of a setting command: 0 = query the current value
_OP_SET = const(1)  # d2: 1 = set

_FRAME = const(10)
_STEP_MS = const(5)  # poll step: 10 bytes take 10.4 ms at 9600 baud

MODE_ACTIVE = const(0)
MODE_QUERY = const(1)


def checksum(buf, start, end):
    """Low 8 bits of the sum of buf[start:end] (PROT 1 and 3.2)."""
    s = 0
    for i in range(start, end):
        s += buf[i]
    return s & 0xFF


def build_command(buf, cmd, op=0, value=0, device_id=0xFFFF):
    """Fill the 19-byte buf with command `cmd` (d2 = op, d3 = value) for device_id; returns buf."""
    buf[0] = _HEAD
    buf[1] = _CMD_ID
    buf[2] = cmd
    buf[3] = op
    buf[4] = value
    for i in range(5, 15):
        buf[i] = 0
    buf[15] = (device_id >> 8) & 0xFF
    buf[16] = device_id & 0xFF
    buf[17] = checksum(buf, 2, 17)
    buf[18] = _TAIL
    return buf


class SDS011(UartSensor):
    channels = ("pm2_5", "pm10")
    _name = "SDS011"
    warmup_ms = 30000  # PROT 3.4: "the data is stable when the sensor works after 30 seconds"

    def __init__(self, uart, clock, mode=MODE_QUERY, target=0xFFFF, timeout_ms=1500, stuck_after=0):
        """uart: a ready UART at 9600 8N1; clock: time-like; mode MODE_QUERY (node asks) or MODE_ACTIVE
        (sensor sends a frame each second); target: device ID commands address (FFFF: any sensor);
        stuck_after: raise SensorStuck after this many identical readings in a row (0 = off)."""
        UartSensor.__init__(self, uart, clock, timeout_ms, stuck_after, 2)
        self.mode = mode
        self.target = target
        self.device_id = None  # ID1 ID2 of the sensor that sent the last good frame
        self.ready = False  # reporting mode and working period checked
        self._tx = bytearray(19)
        self._win = bytearray(_FRAME)  # sliding window over the last 10 bytes received
        self._kind = _DATA_ID  # the frame awaited: its id, and the command a reply answers (_part: its head seen)
        self._cmd = 0

    # --- public -----------------------------------------------------------------------------------
    def setup(self):
        """Put the sensor in our reporting mode and continuous working period, writing its flash only
        when a setting differs (both settings survive power-off, PROT 3.1 and 3.5)."""
        if self._setting(_CMD_REPORTING_MODE, _OP_QUERY, 0) != self.mode:
            self._setting(_CMD_REPORTING_MODE, _OP_SET, self.mode)
        if self._setting(_CMD_WORKING_PERIOD, _OP_QUERY, 0) != 0:
            self._setting(_CMD_WORKING_PERIOD, _OP_SET, 0)
        self.ready = True

    def read(self):
        """One reading into self.values (pm2_5, pm10 at 0.1 ug/m3). The sleep setting survives a deep
        sleep of the node (not a power-off): after such a boot call wake() first, warmup_ms ahead."""
        if not self.ready:
            self.setup()
        self._drain()
        if self.mode == MODE_QUERY:
            self._send(_CMD_QUERY_DATA, 0, 0)
        self._wait(_DATA_ID, 0)
        w = self._win
        pm25 = w[2] | (w[3] << 8)
        pm10 = w[4] | (w[5] << 8)
        self.device_id = (w[6] << 8) | w[7]
        self._keep(pm25, pm10)

    def sleep(self):
        """Laser and fan off until wake() (PROT 3.4); the setting is lost at power-off."""
        self._setting(_CMD_SLEEP_WORK, _OP_SET, 0)

    def wake(self):
        """Laser and fan on; readings are stable warmup_ms later."""
        self._setting(_CMD_SLEEP_WORK, _OP_SET, 1)

    def working_period(self, minutes=None):
        """Query (minutes None) or set the working period: 0 = continuous, 1..30 = one reading every
        `minutes`, the sensor sleeping in between (PROT 3.5). Returns the sensor's value."""
        if minutes is None:
            return self._setting(_CMD_WORKING_PERIOD, _OP_QUERY, 0)
        if minutes < 0 or minutes > 30:
            raise ValueError("working period 0..30 min")
        return self._setting(_CMD_WORKING_PERIOD, _OP_SET, minutes)

    def reporting_mode(self, mode=None):
        """Query (mode None) or set MODE_ACTIVE / MODE_QUERY (PROT 3.1). Returns the sensor's mode."""
        if mode is None:
            return self._setting(_CMD_REPORTING_MODE, _OP_QUERY, 0)
        self.mode = mode
        return self._setting(_CMD_REPORTING_MODE, _OP_SET, mode)

    # --- protocol ---------------------------------------------------------------------------------
    def _send(self, cmd, op, value):
        self.uart.write(build_command(self._tx, cmd, op, value, self.target))

    def _setting(self, cmd, op, value):
        self._drain()
        self._send(cmd, op, value)
        self._wait(_REPLY_ID, cmd)
        return self._win[4]

    def _wait(self, kind, cmd):
        """Slide over incoming bytes until the window holds a frame of `kind` (and `cmd` for replies)."""
        w = self._win
        for i in range(_FRAME):
            w[i] = 0
        self._kind = kind
        self._cmd = cmd
        self._collect(_STEP_MS)

    def _feed(self, chunk, n):
        w = self._win
        kind = self._kind
        for j in range(n):
            for i in range(_FRAME - 1):
                w[i] = w[i + 1]
            w[_FRAME - 1] = chunk[j]
            if w[_FRAME - 2] == _HEAD and chunk[j] == kind:
                self._part = True
            if w[0] != _HEAD or w[1] != kind or w[9] != _TAIL:
                continue
            if kind == _REPLY_ID and w[2] != self._cmd:
                continue
            if checksum(w, 2, 8) != w[8]:
                self.errors += 1
                raise CRCError("SDS011 checksum %02x != %02x" % (w[8], checksum(w, 2, 8)))
            return -1
        return 0

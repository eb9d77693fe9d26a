# QMC5883L 3-axis magnetometer (I2C 0x0D) as a vehicle / parking-bay detector: parked (0/1) and arrivals.
#
# Datasheet: QST QMC5883L "3-Axis Magnetic Sensor" Rev C, section 9 (register map, Table 13):
#   00H..05H data X/Y/Z, LSB first (little-endian int16)       06H status: DRDY b0, OVL b1, DOR b2
#   09H control 1: OSR[7:6] RNG[5:4] ODR[3:2] MODE[1:0]         0AH control 2: SOFT_RST b7, ROL_PNT b6, INT_ENB b0
#   0BH SET/RESET period, datasheet recommends 0x01             0DH chip id, reads 0xFF
# Sensitivity (section 2): 12000 LSB/G at RNG 2 G, 3000 LSB/G at 8 G.
#
# Detection: a steel car body bends the local earth field. The driver keeps an integer EMA of the field
# vector (baseline, updated only while the bay is free), takes |B - baseline| in LSB and runs a hysteresis
# state machine: deviation >= enter_lsb for dwell_ms -> parked (and one arrival counted); deviation <=
# leave_lsb for dwell_ms -> free. A sample with OVL set is flagged (self.flags) and not used.
from micropython import const

from cnode.channels import F_OUT_OF_RANGE
from cnode.drivers.i2creg import I2CReg
from cnode.drivers.errors import FrameError, SensorAbsent, SensorStuck, SensorTimeout

ADDR = const(0x0D)
_REG_XOUT_L = const(0x00)
_REG_STATUS = const(0x06)
_REG_CTRL1 = const(0x09)
_REG_CTRL2 = const(0x0A)
_REG_SET_RESET = const(0x0B)
_REG_CHIP_ID = const(0x0D)
CHIP_ID = const(0xFF)
ST_DRDY = const(0x01)
ST_OVL = const(0x02)
ST_DOR = const(0x04)
MODE_CONT = const(0x01)  # MODE[1:0] = 01 continuous
ODR_10HZ = const(0x00)  # ODR[3:2]: 00 10 Hz, 01 50 Hz, 10 100 Hz, 11 200 Hz
ODR_50HZ = const(0x04)
RNG_2G = const(0x00)  # RNG[5:4]: 00 2 G, 01 8 G
RNG_8G = const(0x10)
OSR_512 = const(0x00)  # OSR[7:6]: 00 512 (lowest noise)
CTRL2_SOFT_RST = const(0x80)
_CLAMP = const(16383)  # deviation components clamped so the sum of squares stays a small int (< 2**30)


def _s16(b, i):
    """Little-endian int16 at b[i] (datasheet 9.2.1: LSB at the lower address)."""
    v = b[i] | (b[i + 1] << 8)
    return v - 0x10000 if v & 0x8000 else v


def _isqrt(n):
    """Integer square root of a small non-negative int (Newton; no floats, no allocation)."""
    if n <= 0:
        return 0
    x = n
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x


class QMC5883L(I2CReg):
    _name = "QMC5883L"

    def __init__(self, i2c, clock, addr=ADDR, ctrl1=OSR_512 | RNG_2G | ODR_10HZ | MODE_CONT,
                 enter_lsb=600, leave_lsb=300, dwell_ms=3000, ema_shift=6, drdy_timeout_ms=250, stuck_reads=20):
        if leave_lsb >= enter_lsb:
            raise ValueError("leave_lsb must be below enter_lsb")
        self.channels = ("parked", "vehicles")
        self.values = [None, None]  # type: list
        I2CReg.__init__(self, i2c, addr)
        self._clock = clock
        self._ctrl1 = ctrl1
        self.enter = enter_lsb
        self.leave = leave_lsb
        self.dwell = dwell_ms
        self._shift = ema_shift
        self._timeout = drdy_timeout_ms
        self._stuck_n = stuck_reads
        self._buf = bytearray(6)
        self.raw = [0, 0, 0]  # last X, Y, Z in LSB
        self._acc = [0, 0, 0]  # baseline << ema_shift
        self._have_base = False
        self.deviation = 0  # |B - baseline| in LSB of the last good sample
        self.parked = 0
        self.vehicles = 0  # arrivals since construction
        self.flags = 0  # channels.F_* of the last read
        self.status = 0
        self._since = 0  # ticks_ms when the deviation first crossed the pending threshold
        self._pending = False
        self._same = 0
        self._need_init = True
        self.init()

    def init(self):
        """Check the chip id, soft-reset and start continuous measurement (datasheet 9.2.4, 9.2.5)."""
        self._need_init = True
        self._read(_REG_CHIP_ID, self._b1)
        if self._b1[0] != CHIP_ID:
            raise FrameError("QMC5883L: chip id 0x%02x, want 0xff" % self._b1[0])
        self._write(_REG_CTRL2, CTRL2_SOFT_RST)
        self._write(_REG_SET_RESET, 0x01)
        self._write(_REG_CTRL1, self._ctrl1)
        self._need_init = False

    # --- measurement -----------------------------------------------------------------------------
    def read(self):
        """Wait (bounded) for DRDY, read X/Y/Z, update the detector; values = [parked, vehicles]."""
        if self._need_init:
            self.init()
        c = self._clock
        t0 = c.ticks_ms()
        b = self._b1
        while True:
            self._read(_REG_STATUS, b)
            if b[0] & ST_DRDY:
                break
            if c.ticks_diff(c.ticks_ms(), t0) >= self._timeout:
                self._need_init = True  # chip may have lost power (standby): configure again next time
                raise SensorTimeout("QMC5883L: no DRDY")
            c.sleep_ms(5)
        st = b[0]
        self.status = st
        buf = self._buf
        self._read(_REG_XOUT_L, buf)
        x = _s16(buf, 0)  # struct.unpack_from would allocate a tuple per read
        y = _s16(buf, 2)
        z = _s16(buf, 4)
        r = self.raw
        if x == r[0] and y == r[1] and z == r[2]:
            self._same += 1
            if self._same >= self._stuck_n:
                self._same = 0
                raise SensorStuck("QMC5883L: same field %d times" % self._stuck_n)
        else:
            self._same = 0
        r[0] = x
        r[1] = y
        r[2] = z
        if st & ST_OVL:
            self.flags = F_OUT_OF_RANGE  # saturated axis: the sample says nothing about the bay
        else:
            self.flags = 0
            self._update(x, y, z, c.ticks_ms())
        self.values[0] = self.parked
        self.values[1] = self.vehicles
        return self.parked

    def _update(self, x, y, z, now):
        acc = self._acc
        k = self._shift
        if not self._have_base:
            acc[0] = x << k
            acc[1] = y << k
            acc[2] = z << k
            self._have_base = True
        dx = x - (acc[0] >> k)
        dy = y - (acc[1] >> k)
        dz = z - (acc[2] >> k)
        dx = _CLAMP if dx > _CLAMP else (-_CLAMP if dx < -_CLAMP else dx)
        dy = _CLAMP if dy > _CLAMP else (-_CLAMP if dy < -_CLAMP else dy)
        dz = _CLAMP if dz > _CLAMP else (-_CLAMP if dz < -_CLAMP else dz)
        dev = _isqrt(dx * dx + dy * dy + dz * dz)
        self.deviation = dev
        if self.parked:
            crossing = dev <= self.leave
        else:
            crossing = dev >= self.enter
        if crossing:
            if not self._pending:
                self._pending = True
                self._since = now
            if self._clock.ticks_diff(now, self._since) >= self.dwell:
                self._pending = False
                if self.parked:
                    self.parked = 0
                else:
                    self.parked = 1
                    self.vehicles += 1
        else:
            self._pending = False
        if not self.parked and not self._pending:
            # baseline follows slow drift (temperature, nearby traffic) only while the bay is free
            acc[0] += x - (acc[0] >> k)
            acc[1] += y - (acc[1] >> k)
            acc[2] += z - (acc[2] >> k)

    def baseline(self):
        k = self._shift
        return (self._acc[0] >> k, self._acc[1] >> k, self._acc[2] >> k)

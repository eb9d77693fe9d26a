# VL53L1X time-of-flight ranger (I2C 0x29, 16-bit register index, big-endian words): distance and bay occupancy.
#
# Sources: ST UM2510 (VL53L1X ultra lite driver, ULD) and its reference code VL53L1X_api.c (ST, BSD-3):
# VL53L1X_SensorInit writes VL51L1X_DEFAULT_CONFIGURATION to 0x2D..0x87 (91 bytes), starts ranging, waits for
# the first data-ready, clears the interrupt, stops, then writes VHV_CONFIG__TIMEOUT_MACROP_LOOP_BOUND = 0x09
# and 0x0B = 0. Data ready: GPIO__TIO_HV_STATUS bit 0 equals the interrupt polarity (active high unless
# GPIO_HV_MUX__CTRL bit 4 is set). VL53L1X_GetResult reads 17 bytes from RESULT__RANGE_STATUS (0x0089):
# status = byte 0 & 0x1F mapped through status_rtn (0 = valid), distance mm = bytes 13..14 (register 0x0096).
# The block below is the one in ST's ULD VL53L1X_api.c (copyright 2017 STMicroelectronics): 0x5F = 0xCC,
# 0x86 = 0x00, 0x87 = 0x00. ST's 2018 Arduino class port differs at 0x2E/0x2F (0x01: I2C/GPIO pull-ups to
# AVDD, a board choice the ULD comments allow) and at 0x5F (0xDB); we keep the ULD values.
from micropython import const

from cnode.drivers.i2creg import I2CReg
from cnode.drivers.errors import FrameError, SensorAbsent, SensorTimeout

ADDR = const(0x29)
_REG_SOFT_RESET = const(0x0000)
_REG_VHV_CONFIG__TIMEOUT_MACROP_LOOP_BOUND = const(0x0008)
_REG_VHV_CONFIG__INIT = const(0x000B)
_REG_DEFAULT_CONFIG = const(0x002D)  # first register of the default-configuration block
_REG_GPIO_HV_MUX__CTRL = const(0x0030)
_REG_GPIO__TIO_HV_STATUS = const(0x0031)
_REG_SYSTEM__INTERRUPT_CLEAR = const(0x0086)
_REG_SYSTEM__MODE_START = const(0x0087)
_REG_RESULT__RANGE_STATUS = const(0x0089)
_REG_RESULT__FINAL_RANGE_MM_SD0 = const(0x0096)
_REG_FIRMWARE__SYSTEM_STATUS = const(0x00E5)
_REG_IDENTIFICATION__MODEL_ID = const(0x010F)
MODEL_ID = const(0xEACC)

# ULD VL51L1X_DEFAULT_CONFIGURATION, registers 0x2D..0x87 in order
DEFAULT_CONFIG = bytes((
    0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x02, 0x08, 0x00, 0x08, 0x10, 0x01, 0x01, 0x00, 0x00, 0x00,  # 0x2D
    0x00, 0xFF, 0x00, 0x0F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x0B, 0x00, 0x00, 0x02, 0x0A, 0x21,  # 0x3D
    0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0xC8, 0x00, 0x00, 0x38, 0xFF, 0x01, 0x00, 0x08, 0x00,  # 0x4D
    0x00, 0x01, 0xCC, 0x0F, 0x01, 0xF1, 0x0D, 0x01, 0x68, 0x00, 0x80, 0x08, 0xB8, 0x00, 0x00, 0x00,  # 0x5D
    0x00, 0x0F, 0x89, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0F, 0x0D, 0x0E, 0x0E, 0x00,  # 0x6D
    0x00, 0x02, 0xC7, 0xFF, 0x9B, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,  # 0x7D..0x87
))
# ULD status_rtn: device range status (RESULT__RANGE_STATUS & 0x1F) -> API status; 255 = undefined
_STATUS_RTN = bytes((255, 255, 255, 5, 2, 4, 1, 7, 3, 0, 255, 255, 9, 13, 255, 255, 255, 255, 10, 6,
                     255, 255, 11, 12))


class VL53L1X(I2CReg):
    _name = "VL53L1X"
    _addrsize = 16  # 16-bit register addresses

    def __init__(self, i2c, clock, addr=ADDR, occupied_below_mm=1500, timeout_ms=300):
        self.channels = ("distance", "occupancy")
        self.values = [None, None]  # type: list
        I2CReg.__init__(self, i2c, addr)
        self._clock = clock
        self.threshold = occupied_below_mm
        self._timeout = timeout_ms
        self._b2 = bytearray(2)
        self._res = bytearray(17)
        self.range_status = 255  # ULD status of the last reading (0 = valid)
        self.distance_mm = None
        self._polarity = 1
        self._need_init = True
        self.init()

    # --- bus -------------------------------------------------------------------------------------
    def _rd8(self, reg):
        self._read(reg, self._b1)
        return self._b1[0]

    def _wait_ready(self, what):
        c = self._clock
        t0 = c.ticks_ms()
        while (self._rd8(_REG_GPIO__TIO_HV_STATUS) & 1) != self._polarity:
            if c.ticks_diff(c.ticks_ms(), t0) >= self._timeout:
                self._need_init = True
                raise SensorTimeout("VL53L1X: no " + what)
            c.sleep_ms(2)

    def init(self):
        """Model id, boot state, default configuration, first (discarded) ranging; ends ranging continuously."""
        self._need_init = True
        self._read(_REG_IDENTIFICATION__MODEL_ID, self._b2)
        mid = (self._b2[0] << 8) | self._b2[1]
        if mid != MODEL_ID:
            raise FrameError("VL53L1X: model id 0x%04x, want 0xeacc" % mid)
        c = self._clock
        t0 = c.ticks_ms()
        while not (self._rd8(_REG_FIRMWARE__SYSTEM_STATUS) & 1):  # ULD BootState
            if c.ticks_diff(c.ticks_ms(), t0) >= self._timeout:
                raise SensorTimeout("VL53L1X: firmware did not boot")
            c.sleep_ms(2)
        try:
            self._i2c.writeto_mem(self.addr, _REG_DEFAULT_CONFIG, DEFAULT_CONFIG, addrsize=16)
        except OSError as e:
            raise self._bus(e)
        # ULD GetInterruptPolarity: active high unless GPIO_HV_MUX__CTRL bit 4 is set
        self._polarity = 0 if self._rd8(_REG_GPIO_HV_MUX__CTRL) & 0x10 else 1
        self._write(_REG_SYSTEM__MODE_START, 0x40)
        self._wait_ready("first data ready")
        self._write(_REG_SYSTEM__INTERRUPT_CLEAR, 0x01)
        self._write(_REG_SYSTEM__MODE_START, 0x00)
        self._write(_REG_VHV_CONFIG__TIMEOUT_MACROP_LOOP_BOUND, 0x09)  # two bounds VHV
        self._write(_REG_VHV_CONFIG__INIT, 0x00)  # start VHV from the previous temperature
        self._write(_REG_SYSTEM__MODE_START, 0x40)  # ranging, until read() has its result
        self._need_init = False
        self._ranging = True

    def read(self):
        """Start ranging (if stopped), wait (bounded) for its result, stop ranging; values = [distance mm,
        occupancy % (100 or 0)] or None. Between readings the sensor is in SW standby, not ranging."""
        if self._need_init:
            self.init()
        elif not self._ranging:  # stopped after the last reading: about 16 mA saved between readings
            self._write(_REG_SYSTEM__MODE_START, 0x40)
            self._ranging = True
        self._wait_ready("data ready")
        res = self._res
        self._read(_REG_RESULT__RANGE_STATUS, res)
        raw = res[0] & 0x1F
        st = _STATUS_RTN[raw] if raw < 24 else 255
        mm = (res[13] << 8) | res[14]  # 0x0096 - 0x0089 = 13
        self._write(_REG_SYSTEM__INTERRUPT_CLEAR, 0x01)
        self._write(_REG_SYSTEM__MODE_START, 0x00)  # stop: SW standby until the next reading
        self._ranging = False
        self.range_status = st
        if st == 0:
            self.distance_mm = mm
            self.values[0] = mm  # registry "distance" is metres at 1e-3: mm as is
            self.values[1] = 100 if mm < self.threshold else 0
        else:
            self.distance_mm = None
            self.values[0] = None
            self.values[1] = None
        return self.distance_mm

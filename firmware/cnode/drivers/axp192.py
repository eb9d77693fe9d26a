# X-Powers AXP192 power-management chip (T-Beam V1.1): switches the LoRa (LDO2) and GPS (LDO3) rails and
# measures the battery. Registers from the AXP192 datasheet (REG 03H, 12H, 28H, 78H-79H, 82H).
from micropython import const

from cnode.drivers.errors import SensorError
from cnode.drivers.i2creg import I2CReg

ADDR = const(0x34)
_REG_IC_TYPE = const(0x03)
_AXP192_ID = const(0x03)
_AXP2101_ID = const(0x4A)  # the T-Beam V1.2's AXP2101 answers at the same address and register
_REG_POWER_OUT = const(0x12)  # bit0 DC-DC1, bit1 DC-DC3 (the ESP32), bit2 LDO2, bit3 LDO3, bit4 DC-DC2, bit6 EXTEN
_LDO2 = const(0x04)
_LDO3 = const(0x08)
_DCDC3 = const(0x02)
_REG_LDO23_VOLT = const(0x28)  # LDO2 bits 7-4, LDO3 bits 3-0: 1.8 V + 100 mV per step
_LDO_3V3 = const(0xFF)  # 3.3 V on both (step 15)
_REG_ADC_EN1 = const(0x82)
_ADC_BAT_V = const(0x80)
_REG_VBAT = const(0x78)  # 12 bits: 78H bits 11-4, 79H bits 3-0, 1.1 mV per step


class WrongPmic(SensorError):
    """Another power chip answers where the board file expects an AXP192."""


class AXP192(I2CReg):
    """The PMU as the board's power switch, and its battery channel (values[0] in millivolts, as Battery)."""

    _name = "AXP192"
    channels = ("battery",)

    def __init__(self, i2c, clock, addr=ADDR):
        I2CReg.__init__(self, i2c, addr)
        self.clock = clock
        self.values: list = [None]
        self._b2 = bytearray(2)
        self._read(_REG_IC_TYPE, self._b1)
        ic = self._b1[0]
        if ic == _AXP2101_ID:
            raise WrongPmic("AXP2101 found (T-Beam V1.2): this board file is for the AXP192 (V1.1)")
        if ic != _AXP192_ID:
            raise WrongPmic("IC type 0x%02x at 0x%02x is not an AXP192" % (ic, addr))
        self.chip = "AXP192"

    def rails(self, lora=True, gps=True):
        """LDO2 (LoRa) and LDO3 (GPS) at 3.3 V, on or off; DC-DC3 (the ESP32 itself) always stays on."""
        self._write(_REG_LDO23_VOLT, _LDO_3V3)
        self._read(_REG_POWER_OUT, self._b1)
        v = (self._b1[0] | _DCDC3) & ~(_LDO2 | _LDO3) & 0xFF
        if lora:
            v |= _LDO2
        if gps:
            v |= _LDO3
        self._write(_REG_POWER_OUT, v)

    def battery_mv(self):
        self._read(_REG_ADC_EN1, self._b1)
        if not self._b1[0] & _ADC_BAT_V:
            self._write(_REG_ADC_EN1, self._b1[0] | _ADC_BAT_V)
            if self.clock is not None:
                self.clock.sleep_ms(40)  # the ADC samples at 25 Hz by default: wait for a first value
        self._read(_REG_VBAT, self._b2)
        raw = (self._b2[0] << 4) | (self._b2[1] & 0x0F)
        return raw * 11 // 10

    def read(self):
        self.values[0] = self.battery_mv()

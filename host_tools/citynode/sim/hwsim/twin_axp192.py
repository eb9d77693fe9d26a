# AXP192 power-management twin (T-Beam V1.1) on the I2C double: the rails LDO2 (LoRa) and LDO3 (GPS) with the
# chips they feed, and the battery voltage ADC. Registers as the AXP192 datasheet gives them (03H, 12H, 28H,
# 78H-79H, 82H). MicroPython-compatible.
_RAILS = {"ldo2": 0x04, "ldo3": 0x08}


class AXP192Twin:
    """`link(rail, chip)` makes `chip.powered` follow LDO2 or LDO3. At power-on this twin has both LDOs off (a
    T-Beam's radio and GPS stay dark until the firmware switches them on), DC-DC1 and DC-DC3 on."""

    def __init__(self, battery_mv=3900, chip_id=0x03):
        self.regs = bytearray(256)
        self.regs[0x03] = chip_id  # IC type: 0x03 AXP192; 0x4A makes it an AXP2101 (T-Beam V1.2) for tests
        self.regs[0x12] = 0x03  # DC-DC1, DC-DC3 on; LDO2, LDO3 off
        self.regs[0x28] = 0xCC  # 3.0 V / 3.0 V until set
        self.battery_mv = battery_mv
        self.ptr = 0
        self._links = []

    def link(self, rail, chip):
        self._links.append((_RAILS[rail], chip))
        self._follow()

    def rail_on(self, rail):
        return bool(self.regs[0x12] & _RAILS[rail])

    def _follow(self):
        for bit, chip in self._links:
            chip.powered = bool(self.regs[0x12] & bit)

    def write(self, data):
        self.ptr = data[0]
        for i in range(1, len(data)):
            self.regs[(self.ptr + i - 1) & 0xFF] = data[i]
        if len(data) > 1:
            self._follow()

    def read(self, n):
        if self.regs[0x82] & 0x80:  # battery voltage ADC enabled: 1.1 mV per step, 12 bits in 78H/79H
            raw = self.battery_mv * 10 // 11
            self.regs[0x78] = (raw >> 4) & 0xFF
            self.regs[0x79] = raw & 0x0F
        else:
            self.regs[0x78] = self.regs[0x79] = 0
        return bytes(self.regs[(self.ptr + i) & 0xFF] for i in range(n))

# AXP192 driver (T-Beam V1.1 power chip): the rails' register bytes, the battery ADC, the chip check, and the
# board's power-on switching the LoRa and GPS rails through it (against the twin).
import cnode  # noqa: F401
from cnode.board import Hardware
from cnode.drivers.axp192 import AXP192, WrongPmic
from cnode.drivers.errors import SensorAbsent
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_axp192 import AXP192Twin
from fwtest import load_json, raises


class _Chip:
    powered = None


def _setup(**kw):
    clock = VirtualClock()
    machine.use(clock)
    i2c = machine.I2C(0)
    twin = i2c.attach(0x34, AXP192Twin(**kw))
    return clock, i2c, twin


def test_rails_switch_ldo2_and_ldo3_and_keep_the_esp32_supply():
    clock, i2c, twin = _setup()
    radio, gps = _Chip(), _Chip()
    twin.link("ldo2", radio)
    twin.link("ldo3", gps)
    assert radio.powered is False and gps.powered is False  # dark until the firmware switches them on
    pmu = AXP192(i2c, clock)
    twin.regs[0x12] = 0x53  # other outputs on (DC-DC1, DC-DC3, DC-DC2, EXTEN): kept as they are
    pmu.rails(lora=True, gps=False)
    assert twin.regs[0x28] == 0xFF  # LDO2 and LDO3 at 3.3 V: 1.8 V + 15 x 100 mV each
    assert twin.regs[0x12] == 0x57 and radio.powered is True and gps.powered is False
    pmu.rails(lora=False, gps=True)
    assert twin.regs[0x12] == 0x5B and radio.powered is False and gps.powered is True
    twin.regs[0x12] = 0x00  # even with DC-DC3 read as off, the driver never switches the ESP32 off
    pmu.rails()
    assert twin.regs[0x12] == 0x0E


def test_battery_voltage_from_the_adc_at_1_1_mv_per_step():
    clock, i2c, twin = _setup(battery_mv=3960)
    pmu = AXP192(i2c, clock)
    pmu.read()
    assert twin.regs[0x82] & 0x80  # battery voltage ADC enabled first
    raw = (twin.regs[0x78] << 4) | twin.regs[0x79]
    assert raw == 3600 and pmu.values[0] == 3960


def test_a_missing_or_other_power_chip_is_a_clear_error():
    clock, i2c, twin = _setup(chip_id=0x4A)
    e = raises(WrongPmic, AXP192, i2c, clock)
    assert "AXP2101" in str(e) and "V1.2" in str(e)
    i2c.detach(0x34)
    raises(SensorAbsent, AXP192, i2c, clock)


def test_tbeam_power_on_switches_the_radio_and_gps_rails():
    board = load_json("boards/tbeam.json")
    clock = VirtualClock()
    machine.use(clock)
    twin = machine.attach_i2c(board["i2c"]["scl"], 0x34, AXP192Twin())
    radio = _Chip()
    twin.link("ldo2", radio)
    hw = Hardware(board, machine)
    hw.power_on(clock)
    assert radio.powered is True and twin.rail_on("ldo3") and hw.pmic is not None
    slots = hw.slots(clock)
    assert slots[-1].driver is hw.pmic  # the battery channel comes from the PMIC on this board
    machine.use(clock)
    hw = Hardware(board, machine)
    hw.power_on(clock)  # no power chip answers: kept, not raised (the radio behind it says why)
    assert hw.pmic is None and hw.pmic_error is not None

# Board files become buses, sensors and a self-test table with the machine double (both runtimes).
from cnode.board import BoardError, Hardware, selftest
from citynode.hwsim import machine
from citynode.hwsim.clock import VirtualClock
from citynode.hwsim.twin_bme280 import BME280Twin
from fwtest import load_json, raises

BOARDS = ("heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "ttgo-lora32-v2.1", "tbeam", "esp32-devkit-lora-e5",
          "virtual")


def _hw(name):
    clock = VirtualClock()
    board = load_json("boards/%s.json" % name)
    machine.use(clock, board["chip"])  # the S3's pins are not the ESP32's
    return Hardware(board, machine), clock


def test_every_board_builds_its_sensors():
    for name in BOARDS:
        hw, clock = _hw(name)
        board = hw.board
        assert board["chip"] in ("esp32", "esp32s3")
        slots = hw.slots(clock)
        want = len(board.get("sensors", ())) + (1 if "adc" in board.get("battery", {}) else 0)
        assert len(slots) == want, name
        for s in slots:
            assert s.driver.channels and len(s.driver.values) == len(s.driver.channels)


def test_selftest_reads_present_sensors_and_reports_missing_ones():
    hw, clock = _hw("heltec-wifi-lora-32-v2")
    hw.i2c().attach(0x76, BME280Twin(clock))
    hw.adc_uv = 0
    lines = []
    slots = hw.slots(clock)
    for s in slots:
        if type(s.driver).__name__ == "Battery":
            s.driver.adc.uv = 1300000  # 1.3 V at the pin of a 220k/100k divider: about 4.16 V
    failed = selftest(slots, lines.append)
    text = "\n".join(lines)
    assert "BME280" in text and "temperature" in text
    assert "SDS011" in text and "FAILED" in text  # nothing on its UART
    assert failed == 1
    assert lines[-1] == "selftest: %d sensors, 1 failed" % len(slots)


def test_unknown_driver_is_a_board_error():
    clock = VirtualClock()
    machine.use(clock)
    hw = Hardware({"i2c": {"scl": 1, "sda": 2}, "sensors": [{"driver": "flux-capacitor", "bus": "i2c"}]}, machine)
    raises(BoardError, hw.slots, clock)


def test_missing_uart_is_a_board_error():
    clock = VirtualClock()
    machine.use(clock)
    hw = Hardware({"sensors": [{"driver": "sds011", "uart": 2}]}, machine)
    raises(BoardError, hw.slots, clock)

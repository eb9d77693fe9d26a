# Board files become buses, sensors and a self-test table with the machine double (both runtimes).
from cnode.board import BoardError, Hardware, selftest
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_bme280 import BME280Twin
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


# --- the BLE counter: on the chip's own radio, through the bluetooth module (the double under test) ----------
def _ble_board(every=1):
    return {"chip": "esp32", "sensors": [{"driver": "blecount", "bus": "ble", "every": every, "capacity": 64,
                                          "k_min": 6, "rssi_min": -80, "scan_interval_us": 320000,
                                          "scan_window_us": 25000}]}


def _crowd(n):
    from citynode.sim.hwsim.twin_mobility import BleCrowd

    crowd = BleCrowd()
    for i in range(n):
        crowd.add(1, bytes((0x40, 0, 0, 0, 1, i)), -60)
    crowd.add(1, bytes((0x40, 0, 0, 0, 2, 0)), -90)  # beyond the board file's RSSI floor (-80)
    return crowd


def test_a_ble_counter_is_built_from_the_board_file_and_scans():
    from citynode.sim.hwsim import bluetooth
    from cnode.runner import counter
    from cnode.sampler import Sampler

    clock = VirtualClock()
    machine.use(clock)
    bluetooth.install()
    try:
        slots = Hardware(_ble_board(every=3), machine).slots(clock)
        assert len(slots) == 1 and slots[0].every == 3
        c = slots[0].driver
        assert type(c).__name__ == "BleCounter"
        assert (c.capacity, c.k_min, c.rssi_min) == (64, 6, -80)
        ble = bluetooth.BLE()
        assert ble.active() and ble._scan == [None, 320000]  # forever, at the board file's interval
        ble.radiate(_crowd(7))
        ble.advance(3000)
        sampler = Sampler(slots, clock)
        assert counter(sampler) is c  # it counts in RAM: the node stays out of deep sleep
        assert sampler.sample() == 0
        k = sampler.index("pedestrians")
        assert sampler.vals[k] == 7 and sampler.flags[k] == 0
    finally:
        bluetooth.uninstall()


def test_without_bluetooth_the_ble_counter_reads_as_missing_until_it_comes_up():
    import sys
    from citynode.sim.hwsim import bluetooth
    from cnode.channels import F_MISSING
    from cnode.runner import counter
    from cnode.sampler import Sampler

    bluetooth.uninstall()
    try:
        import bluetooth as real  # noqa: F401
        return  # this interpreter has a bluetooth module of its own: nothing to check here
    except ImportError:
        pass
    clock = VirtualClock()
    machine.use(clock)
    slots = Hardware(_ble_board(), machine).slots(clock)
    d = slots[0].driver
    assert type(d).__name__ == "Absent" and "bluetooth" in str(d.error)
    assert d.channels == ("pedestrians",) and d.keeps_count_in_ram
    sampler = Sampler(slots, clock)
    assert counter(sampler) is d  # awake anyway: once it comes up, it counts whole windows
    k = sampler.index("pedestrians")
    assert sampler.sample() == 1 and sampler.vals[k] is None and sampler.flags[k] == F_MISSING
    bluetooth.install()  # the radio comes up
    try:
        assert sampler.sample() == 1 and sampler.vals[k] is None  # it has counted nothing of this window
        assert "counting from now" in slots[0].last_error
        bluetooth.BLE().radiate(_crowd(8))
        bluetooth.BLE().advance(2000)
        assert sampler.sample() == 0 and sampler.vals[k] == 8 and sampler.flags[k] == 0
    finally:
        bluetooth.uninstall()
    assert "bluetooth" not in sys.modules


def test_value_text_is_the_decoders_number_with_the_registrys_unit():
    from cnode.board import value_text

    assert value_text("temperature", 741) == "7.41 Cel"
    assert value_text("temperature", -5) == "-0.05 Cel"
    assert value_text("temperature", -150) == "-1.5 Cel"
    assert value_text("humidity", 600) == "60.0 %RH"
    assert value_text("pressure", 101325) == "101325 Pa"
    assert value_text("pm2_5", 75) == "7.5 ug/m3"
    assert value_text("battery", 3900) == "3.9 V"
    assert value_text("latitude", 5227990) == "52.2799 lat"
    assert value_text("distance", 7) == "0.007 m"
    assert value_text("co2", 420) == "420 ppm"
    assert value_text("reboot_reason", 1) == "1"  # an enumeration: no SenML unit
    assert value_text("pressure", None) == "-"
    assert value_text("no_such_channel", 12) == "12"


def test_the_selftest_table_shows_every_value_with_its_unit():
    from citynode.sim.hwsim.twin_bme280 import constant
    from citynode.sim.hwsim.twin_uart_pm import SDS011Twin

    hw, clock = _hw("virtual")
    hw.i2c().attach(0x76, BME280Twin(clock, series=constant(temperature=21.5, humidity=45.0, pressure=101325.0),
                                     noise=0))
    machine.attach_uart(16, SDS011Twin(clock, lambda ms: {"pm2_5": 7.5, "pm10": 12.5}))
    slots = hw.slots(clock)
    slots[-1].driver.adc.uv = 1950000  # 1.95 V at the pin of the 100k/100k divider: 3.9 V
    lines = []
    assert selftest(slots, lines.append) == 0
    assert lines == ["sensor     channel        value",
                     "BME280     temperature    21.5 Cel",
                     "BME280     humidity       45.0 %RH",
                     "BME280     pressure       101325 Pa",
                     "SDS011     pm2_5          7.5 ug/m3",
                     "SDS011     pm10           12.5 ug/m3",
                     "Battery    battery        3.9 V",
                     "selftest: 3 sensors, 0 failed"]


class _Reset(Exception):
    """The board resets here (citynode flash's Ctrl-C, a reflash, the watchdog): the program ends, the sensors
    keep the state it left them in."""


class _ResetAt:
    """The board's clock until its n-th wait, where the board resets."""

    def __init__(self, clock, n):
        self._c = clock
        self.n = n

    def __getattr__(self, name):
        return getattr(self._c, name)

    def sleep_ms(self, ms):
        self.n -= 1
        if self.n == 0:
            raise _Reset()
        self._c.sleep_ms(ms)


def _v3_after_a_reset_during_the_app(n, mode):
    """The Heltec V3's app reads its sensors and the board resets at its n-th wait; then the self-test runs on
    the same sensors, as after `citynode flash` stopped the app. Returns (failed, table)."""
    from citynode.sim.hwsim.twin_sensirion import SCD4xTwin, SHT4xTwin

    hw, clock = _hw("heltec-wifi-lora-32-v3")
    for s in hw.board["sensors"]:
        if s["driver"] == "scd4x":
            if mode is None:
                s.pop("mode", None)  # an SCD40: periodic measurement
            else:
                s["mode"] = mode
    hw.i2c().attach(0x62, SCD4xTwin(clock))
    hw.i2c().attach(0x44, SHT4xTwin(clock))
    try:
        app = hw.slots(_ResetAt(clock, n))
        app[-1].driver.adc.uv = 800000  # the battery: about 3.9 V behind the 390k/100k divider
        for s in app:
            s.driver.read()
    except _Reset:
        pass
    clock.sleep_ms(1500)  # the reset, the boot, the REPL
    after = Hardware(hw.board, machine).slots(clock)
    after[-1].driver.adc.uv = 800000
    lines = []
    return selftest(after, lines.append), "\n".join(lines)


def test_a_selftest_after_a_reset_in_the_middle_of_an_scd41_single_shot_passes():
    """The SCD41 measures a single shot for 5 s and acknowledges nothing meanwhile (DS 3.3): a self-test that
    came right after a reset during the app's reading was refused ("SCD4x: no ACK at 0x62")."""
    for n in range(1, 9):
        failed, table = _v3_after_a_reset_during_the_app(n, "single_shot")
        assert failed == 0, "reset at wait %d:\n%s" % (n, table)
        assert "SCD4x      co2            " in table and " ppm" in table


def test_a_selftest_after_an_app_left_an_scd40_measuring_periodically_passes():
    """In periodic measurement the SCD4x takes only a few commands (DS 3.5); start_periodic_measurement again is
    refused, so the self-test must stop it first."""
    for n in (1, 2, 3, 100):
        failed, table = _v3_after_a_reset_during_the_app(n, None)
        assert failed == 0, "reset at wait %d:\n%s" % (n, table)

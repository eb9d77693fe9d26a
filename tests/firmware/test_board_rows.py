# The driver table of cnode.board (one row per driver) against the drivers themselves, and the options a board
# file's sensors entry passes through to its driver, checked with errors that name the file, the entry and the
# option (both runtimes).
from cnode import board
from cnode.board import BoardError, Hardware, channels, check
from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from fwtest import load_json, raises

BOARDS = ("heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "ttgo-lora32-v2.1", "tbeam", "esp32-devkit-lora-e5",
          "virtual")
_SCL = 22
_UART_RX = 16


def _pm(ms):
    return {"pm1": 4.0, "pm2_5": 6.0, "pm10": 11.0}


def _twin(name, clock):
    """The simulated twin of a driver's chip (None: nothing to attach) and its I2C address."""
    if name == "bme280":
        from citynode.sim.hwsim.twin_bme280 import BME280Twin
        return BME280Twin(clock), 0x76
    if name == "sht4x":
        from citynode.sim.hwsim.twin_sensirion import SHT4xTwin
        return SHT4xTwin(clock), 0x44
    if name == "scd4x":
        from citynode.sim.hwsim.twin_sensirion import SCD4xTwin
        return SCD4xTwin(clock), 0x62
    if name == "dnms":
        from citynode.sim.hwsim.twin_sensirion import DNMSTwin
        return DNMSTwin(clock), 0x55
    if name == "qmc5883l":
        from citynode.sim.hwsim.twin_mobility import QMC5883LTwin
        return QMC5883LTwin(clock), 0x0D
    if name == "vl53l1x":
        from citynode.sim.hwsim.twin_mobility import VL53L1XTwin
        return VL53L1XTwin(clock), 0x29
    if name == "sds011":
        from citynode.sim.hwsim.twin_uart_pm import SDS011Twin
        return SDS011Twin(clock, _pm), None
    if name == "sps30":
        from citynode.sim.hwsim.twin_uart_pm import SPS30Twin
        return SPS30Twin(clock, _pm), None
    if name == "pms5003":
        from citynode.sim.hwsim.twin_uart_pm import PMS5003Twin
        return PMS5003Twin(clock, _pm), None
    if name == "nmea":
        from citynode.sim.hwsim.twin_gps import GpsTwin
        return GpsTwin(clock, position=lambda ms: (5227990, 804720)), None
    return None, None


def _board(entry, name=None):
    b = {"chip": "esp32", "i2c": {"scl": _SCL, "sda": 21}, "uarts": [{"id": 1, "tx": 17, "rx": _UART_RX}],
         "sensors": [entry]}
    if name:
        b["name"] = name
    return b


def _built(entry, twin=True):
    """The driver a board with only this sensors entry builds (its twin wired where the entry says, unless
    `twin` is False), and the Hardware."""
    from citynode.sim.hwsim import bluetooth

    clock = VirtualClock()
    machine.use(clock)
    hw = Hardware(_board(entry), machine)
    t, addr = _twin(board._row(entry["driver"])[0], clock) if twin else (None, None)
    if t is not None and addr is not None:
        machine.attach_i2c(_SCL, addr, t)
    elif t is not None:
        machine.attach_uart(_UART_RX, t)
    bluetooth.install()
    try:
        slots = hw.slots(clock)
    finally:
        bluetooth.uninstall()
    return slots[0].driver, hw, clock


def _values(t):
    """Values an option of type `t` takes that may change what the driver reads: both for a bool, each for a
    choice (integers only tune a driver)."""
    t = t.split("+")[0]
    if t == "bool":
        return (False, True)
    if ".." in t:
        return ()
    return tuple(t.split("|"))


def _entries():
    """A sensors entry for every sensor driver: as it is, and with each bool and choice option at each value."""
    for r in board._DRIVERS:
        row = r.split()
        if row[2] == "adc":
            continue
        base = {"driver": row[0], "bus": row[2]}
        if row[2] == "uart":
            base["uart"] = 1
        if row[2] == "pin":
            base["pin"] = 27
        yield base
        for o in row[5:]:
            n, t = o.split(":")
            for v in _values(t):
                e = dict(base)
                e[n] = v
                yield e


def test_every_rows_channels_are_the_channels_its_driver_reads():
    seen = set()
    for entry in _entries():
        drv, hw, clock = _built(entry)
        name = entry["driver"]
        seen.add(name)
        assert type(drv).__name__ == board._row(name)[1], entry  # the twin answered: the driver itself
        assert drv.channels == channels(entry), (entry, drv.channels, channels(entry))
        if name == "blecount":
            continue  # nothing to read before its window closes
        for _ in range(3):  # a GPS needs a sentence or two; a counter reads what it counted
            clock.sleep_ms(1500)
            drv.read()
        assert len(drv.values) == len(drv.channels), entry
        assert None not in drv.values, (entry, drv.values)
    assert len(seen) == len(board._DRIVERS) - 1  # every sensor driver (the battery is its own section)


def test_the_battery_row_is_the_battery_driver():
    b = load_json("boards/virtual.json")
    clock = VirtualClock()
    machine.use(clock, b["chip"])
    d = Hardware(b, machine).slots(clock)[-1].driver
    row = board._row("battery")
    assert type(d).__name__ == row[1] and d.channels == tuple(row[4].split(","))


def test_a_missing_sensor_has_the_channels_its_driver_would_read():
    absent = 0
    for entry in _entries():
        drv = _built(entry, twin=False)[0]  # nothing answers
        if type(drv).__name__ == "Absent":  # the drivers that talk to their chip when built (I2C: chip id, reset)
            absent += 1
            assert drv.channels == channels(entry) and len(drv.values) == len(drv.channels), entry
    assert absent >= 5


def test_an_scd4x_with_th_reads_temperature_and_humidity_too():
    drv = _built({"driver": "scd4x", "bus": "i2c", "address": "0x62", "th": True})[0]
    drv.read()
    assert drv.channels == ("co2", "temperature", "humidity")
    assert 300 <= drv.values[0] <= 5000 and -1000 <= drv.values[1] <= 5000 and 0 <= drv.values[2] <= 1000


def test_options_reach_the_driver():
    d = _built({"driver": "bme280", "bus": "i2c", "address": "0x76", "osrs": 3, "p64": False, "stuck_reads": 5})[0]
    assert (d._osrs, d._p64, d._stuck_n) == (3, False, 5)
    d = _built({"driver": "pir", "pin": 27, "channel": "bikes", "dead_ms": 500})[0]
    assert d.channels == ("bikes",) and d._dead == 500
    d = _built({"driver": "scd4x", "address": "0x62", "mode": "single_shot", "stuck_reads": 0})[0]
    assert d._shot and d._stuck_n == 0
    d = _built({"driver": "sps30", "uart": 1, "read_timeout_ms": 4000})[0]
    assert d.read_timeout_ms == 4000


def test_a_uart_driver_gets_its_rows_baud_unless_the_board_file_gives_one():
    for name, baud in (("sds011", 9600), ("sps30", 115200), ("pms5003", 9600), ("gps_nmea", 9600)):
        hw = _built({"driver": name, "uart": 1})[1]
        assert hw.uart(1, 0).baudrate == baud, name


def test_every_shipped_board_file_passes_the_check():
    for name in BOARDS:
        b = load_json("boards/%s.json" % name)
        for i in range(len(b["sensors"])):
            s = b["sensors"][i]
            row, kw = check(s, "sensors[%d]" % i)
            for k in kw:
                assert k in s and k not in ("driver", "bus", "address", "uart", "pin", "every", "note"), (name, k)


def _error(entry, *others):
    """The BoardError a board file gets for this sensors entry (after `others`), as the node says it."""
    from citynode.sim.hwsim import bluetooth

    clock = VirtualClock()
    machine.use(clock)
    b = _board(entry, "heltec-wifi-lora-32-v3")
    b["sensors"] = list(others) + [entry]
    bluetooth.install()
    try:
        return str(raises(BoardError, Hardware(b, machine).slots, clock))
    finally:
        bluetooth.uninstall()


def test_an_unknown_option_names_the_board_file_the_sensor_and_the_option():
    sht = {"driver": "sht4x", "bus": "i2c", "address": "0x44"}
    assert _error({"driver": "scd4x", "bus": "i2c", "address": "0x62", "thx": True}, sht) == (
        "board file /board.json (heltec-wifi-lora-32-v3): sensors[1] (scd4x): unknown option 'thx' (options: "
        "th:bool+temperature,humidity mode:periodic|single_shot stuck_reads:0..65535)")
    # an option of another driver: a BME280 has no mode (it was passed on and failed in the constructor)
    assert _error({"driver": "bme280", "mode": "single_shot"}).endswith(
        "sensors[0] (bme280): unknown option 'mode' (options: osrs:1..5 p64:bool stuck_reads:0..65535)")
    assert _error({"driver": "vl53l1x", "evrey": 3}).startswith("board file /board.json (heltec-wifi-lora-32-v3): "
                                                                 "sensors[0] (vl53l1x): unknown option 'evrey'")


def test_an_option_of_the_wrong_type_or_range_names_the_board_file_the_sensor_and_the_option():
    pre = "board file /board.json (heltec-wifi-lora-32-v3): sensors[0] "
    for entry, want in (
            ({"driver": "scd4x", "th": 1}, "(scd4x): option 'th': expected true or false, got 1"),
            ({"driver": "scd4x", "th": "yes"}, "(scd4x): option 'th': expected true or false, got \"yes\""),
            ({"driver": "bme280", "osrs": 6}, "(bme280): option 'osrs': expected an integer 1..5, got 6"),
            ({"driver": "bme280", "osrs": True}, "(bme280): option 'osrs': expected an integer 1..5, got true"),
            ({"driver": "bme280", "osrs": "3"}, "(bme280): option 'osrs': expected an integer 1..5, got \"3\""),
            ({"driver": "bme280", "stuck_reads": -1},
             "(bme280): option 'stuck_reads': expected an integer 0..65535, got -1"),
            ({"driver": "scd4x", "mode": "sleepy"},
             "(scd4x): option 'mode': expected one of periodic|single_shot, got \"sleepy\""),
            ({"driver": "pir_counter", "pin": 27, "channel": "cars"},
             "(pulse): option 'channel': expected one of pedestrians|bikes|vehicles, got \"cars\""),
            ({"driver": "blecount", "rssi_min": -128}, "(blecount): option 'rssi_min': expected an integer "
                                                        "-127..0, got -128")):
        assert _error(entry) == pre + want, (entry, _error(entry))


def test_an_unknown_driver_or_a_wrong_bus_names_the_board_file_and_the_sensor():
    pre = "board file /board.json (heltec-wifi-lora-32-v3): sensors[0]"
    assert _error({"driver": "flux-capacitor", "bus": "i2c"}) == pre + ": unknown driver 'flux-capacitor'"
    assert _error({"driver": "battery"}) == pre + ": unknown driver 'battery'"  # its own section of the file
    assert _error({"driver": "bme280", "bus": "uart", "uart": 1}) == pre + " (bme280): bus 'uart', but it is on i2c"


def test_options_a_driver_refuses_together_name_the_board_file_and_the_sensor():
    e = _error({"driver": "qmc5883l", "enter_lsb": 300, "leave_lsb": 300})
    assert e.startswith("board file /board.json (heltec-wifi-lora-32-v3): sensors[0] (qmc5883l): "), e
    assert "leave_lsb" in e
    e = _error({"driver": "blecount", "scan_interval_us": 30000, "scan_window_us": 300000})
    assert e.startswith("board file /board.json (heltec-wifi-lora-32-v3): sensors[0] (blecount): "), e


def test_without_a_name_the_error_names_the_file():
    clock = VirtualClock()
    machine.use(clock)
    b = _board({"driver": "scd4x", "th": 0})
    e = str(raises(BoardError, Hardware(b, machine).slots, clock))
    assert e == "board file /board.json: sensors[0] (scd4x): option 'th': expected true or false, got 0"


def test_every_sensor_driver_module_has_a_row():
    import os

    from fwtest import root

    names = [r.split()[0] for r in board._DRIVERS]
    d = root() + "/firmware/cnode/drivers"
    for f in os.listdir(d):
        if not f.endswith(".py") or f == "axp192.py":  # the power chip: built from the power section
            continue
        with open(d + "/" + f) as fh:
            driver = "channels = " in fh.read()  # a sensor driver says what it reads; helpers do not
        if driver:
            assert f[:-3] in names, "firmware/cnode/drivers/%s has no row in cnode.board._DRIVERS" % f


def test_the_modem_uart_is_built_by_the_board():
    b = load_json("boards/esp32-devkit-lora-e5.json")
    clock = VirtualClock()
    machine.use(clock, b["chip"])
    u = Hardware(b, machine).modem_uart(b["radio"])
    assert (u.id, u.baudrate, u.rxbuf, u.timeout) == (2, 9600, 1024, 0)
    r = {"type": "rak3172", "pins": {"tx": 17, "rx": 16}}  # no uart, no baud: UART2 at the modem's default
    u = Hardware(b, machine).modem_uart(r)
    assert (u.id, u.baudrate) == (2, 115200)

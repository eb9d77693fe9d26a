"""The hardware double against the ESP32 port's reference (../shared/docs/esp32-api.md, read from MicroPython
1.26.1's C sources): its tables' constants, pin sets, limits and error messages are parsed here and the double
(citynode.hwsim.machine, .esp32, .nvs, .clock) must match them, so it cannot drift from the port again. Plus the
watchdog biting in virtual time (no document needed)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from citynode.hwsim import esp32 as E
from citynode.hwsim import machine as M
from citynode.hwsim import nvs as N
from citynode.hwsim.clock import VirtualClock, gmtime

DOC = Path(__file__).resolve().parents[2].parent / "shared" / "docs" / "esp32-api.md"


def _sections() -> dict[str, list[tuple[str, str]]]:
    """{heading: [(API cell, Behaviour cell)]} of every table row in the document."""
    out: dict[str, list] = {}
    head = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("#"):
            head = line.lstrip("#").strip()
            out.setdefault(head, [])
        elif line.startswith("|") and not line.startswith("|---") and not line.startswith("| API"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
            if len(cells) >= 2:
                out[head].append((cells[0], cells[1]))
    return out


def _row(section: str, api: str) -> str:
    """The whole row (API and Behaviour) whose API cell starts with `api`."""
    for a, b in _sections()[section]:
        if a.strip("`").startswith(api):
            return a + " | " + b
    raise AssertionError(f"no row {api!r} in {section!r} of {DOC.name}")


def _constants(text: str) -> dict[str, int | bool]:
    """NAME=value pairs, with chains (A=B=2) and boolean values; ranges such as DRIVE_0..3=0..3 expanded."""
    out: dict = {}
    for m in re.finditer(r"\b([A-Z][A-Z0-9_]*(?:\.\.\d+)?)((?:=[A-Z][A-Z0-9_]*)*)=(0x[0-9A-Fa-f]+|-?\d+(?:\.\.\d+)?|True|False)\b",
                         text):
        names = [m.group(1)] + [n for n in m.group(2).split("=") if n]
        v = m.group(3)
        if ".." in m.group(1):  # DRIVE_0..3=0..3
            base, hi = m.group(1).split("..")
            stem, lo = base.rsplit("_", 1)
            vlo = int(v.split("..")[0])
            for k in range(int(lo), int(hi) + 1):
                out[f"{stem}_{k}"] = vlo + k - int(lo)
            continue
        val = {"True": True, "False": False}.get(v)
        if val is None:
            val = int(v, 0)
        for n in names:
            out[n] = val
    return out


def _messages(text: str, exc: str) -> list[str]:
    return re.findall(exc + r"\('(.+?)'\)", text) + re.findall(exc + r'\("(.+?)"\)', text)


def _ranges(text: str) -> set[int]:
    out = set()
    for a, b in re.findall(r"(\d+)(?:-(\d+))?", text):
        out |= set(range(int(a), int(b or a) + 1))
    return out


def _raises(exc, fn, *args, **kw) -> BaseException:
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    return e.value


@pytest.fixture
def clock():
    c = VirtualClock()
    M.use(c)
    return c


pytestmark_doc = pytest.mark.esp32doc


@pytestmark_doc
def test_constants_are_the_ports(clock):
    sec = _sections()
    checks = [
        (M.Pin, _row("machine.Pin", "Constants")),
        (M.ADC, _row("machine.ADC / ADCBlock", "Constants")),
        (M, _row("machine module (functions, constants)", "PWRON_RESET")),
        (M, _row("machine module (functions, constants)", "PIN_WAKE")),
        (M, _row("machine module (functions, constants)", "SLEEP=2")),
        (E, _row("esp32 module", "Constants")),
    ]
    seen = 0
    for obj, text in checks:
        consts = _constants(text.split("S3:")[0])  # the ESP32's (the S3 has WIDTH_12BIT only)
        assert consts, text
        for name, value in consts.items():
            assert getattr(obj, name) == value and type(getattr(obj, name)) is type(value), (name, value)
            seen += 1
    assert seen >= 30 and sec


@pytestmark_doc
@pytest.mark.parametrize("chip,row", [("esp32", "valid ids ESP32")])
def test_exactly_the_ports_pins_exist(clock, chip, row):
    text = _row("machine.Pin", row)
    ids = _ranges(text.split("|")[1].split("(")[0])
    assert ids == set(range(0, 24)) | {25, 26, 27} | set(range(32, 40))  # the document, as read
    msg = _messages(text + _row("machine.Pin", "valid ids ESP32"), "ValueError")
    for g in range(0, 49):
        if g in ids:
            M.Pin(g)
        else:
            assert str(_raises(ValueError, M.Pin, g)) in msg
    out_msg = _messages(_row("machine.Pin", "mode"), "ValueError")
    assert str(_raises(ValueError, M.Pin, 34, M.Pin.OUT)) in out_msg
    M.Pin(34, M.Pin.IN)


@pytestmark_doc
def test_pin_irq_takes_no_hard_and_unknown_keywords_fail_as_on_the_port(clock):
    argcheck = DOC.read_text().split("Arg errors")[1].split("\n")[0]
    extra_kw = _messages(argcheck, "TypeError")[0]
    assert extra_kw == "extra keyword arguments given"
    assert "no `hard=`" in _row("machine.Pin", "irq(")
    p = M.Pin(4, M.Pin.IN)
    assert str(_raises(TypeError, p.irq, handler=lambda p: None, hard=True)) == extra_kw
    assert str(_raises(TypeError, M.Pin, 4, M.Pin.OUT, speed=1)) == extra_kw
    p.irq(handler=lambda p: None, trigger=M.Pin.IRQ_RISING)
    wake = _messages(_row("machine.Pin", "irq wake"), "ValueError")
    assert str(_raises(ValueError, p.irq, handler=None, trigger=M.Pin.WAKE_LOW, wake=9)) in wake
    assert str(_raises(ValueError, M.Pin(5).irq, handler=None, trigger=M.Pin.WAKE_LOW, wake=4)) in wake
    # pull bits as the port reads them: &1 down, &2 up
    assert M.Pin(21, M.Pin.IN, M.Pin.PULL_UP).value() == 1 and M.Pin(22, M.Pin.IN, M.Pin.PULL_DOWN).value() == 0


@pytestmark_doc
def test_bus_ids_framing_and_adc_fail_as_on_the_port(clock):
    i2c = _row("machine.I2C (hardware) / SoftI2C", "I2C(id=0")
    assert str(_raises(ValueError, M.I2C, 2)) in [m.replace("(n)", "(2)") for m in _messages(i2c, "ValueError")]
    assert str(_raises(TypeError, M.I2C, 0, 22, 21)) == "extra positional arguments given"
    bus = M.I2C(0, scl=M.Pin(22), sda=M.Pin(21))
    addr = _messages(_row("machine.I2C (hardware) / SoftI2C", "readfrom_mem("), "ValueError")
    assert str(_raises(ValueError, bus.readfrom_mem, 0x76, 0xD0, 1, addrsize=12)) in addr
    uart = _row("machine.UART", "UART(id")
    assert str(_raises(ValueError, M.UART, 3)) == _messages(uart, "ValueError")[0].replace("(n)", "(3)")
    assert str(_raises(ValueError, M.UART, 1, 9600, bits=9)) in _messages(_row("machine.UART", "bits"), "ValueError")
    assert str(_raises(ValueError, M.UART, 1, 9600, stop=3)) in _messages(_row("machine.UART", "stop"), "ValueError")
    assert str(_raises(ValueError, M.UART, 0, 115200, rxbuf=512)) in _messages(_row("machine.UART", "txbuf/rxbuf"),
                                                                                "ValueError")
    spi = _row("machine.SPI / SoftSPI", "SPI(id")
    assert str(_raises(ValueError, M.SPI, 3)) == _messages(spi, "ValueError")[0].replace("(n)", "(3)")
    adc_pins = _row("machine.ADC / ADCBlock", "ADC pins ESP32").split("S3:")[0]
    pins = {int(x) for x in re.findall(r"\d+", adc_pins.split("ADC1:")[1].split("(ch")[0])}
    pins |= {int(x) for x in re.findall(r"\d+", adc_pins.split("ADC2:")[1].split("(ch")[0])}
    for g in sorted(set(range(0, 40)) - {24, 28, 29, 30, 31}):
        if g in pins:
            M.ADC(M.Pin(g))
        else:
            assert str(_raises(ValueError, M.ADC, M.Pin(g))) in _messages(adc_pins, "ValueError") + ["invalid pin"]
    assert str(_raises(ValueError, M.ADC, M.Pin(35), atten=4)) in _messages(_row("machine.ADC / ADCBlock", "atten range"),
                                                                             "ValueError")
    assert str(_raises(ValueError, M.ADC(M.Pin(35)).width, 8)) in _messages(_row("machine.ADC / ADCBlock", "atten(a)`"),
                                                                             "ValueError")
    freq = _messages(_row("machine module (functions, constants)", "freq("), "ValueError")
    assert str(_raises(ValueError, M.freq, 100_000_000)) in freq
    M.freq(80_000_000)
    assert M.freq() == 80_000_000


@pytestmark_doc
def test_rtc_memory_wdt_time_and_nvs_limits_are_the_ports(clock):
    mem = _row("machine.RTC", "memory(")
    limit = int(re.search(r"max \**(\d+)\** bytes", mem).group(1))
    rtc = M.RTC()
    rtc.memory(bytes(limit))
    assert str(_raises(ValueError, rtc.memory, bytes(limit + 1))) in _messages(mem, "ValueError")
    M.power_on()
    assert rtc.memory() == b""  # cleared on power-on, kept otherwise (deep sleep, WDT reset)
    dt = _row("machine.RTC", "datetime(t)")
    msg = _messages(dt, "ValueError")[0]
    assert str(_raises(ValueError, rtc.datetime, (2026, 1, 1))) == msg.replace("length N", "length 3")
    wdt = _row("machine.WDT", "WDT(id=0")
    assert str(_raises(ValueError, M.WDT, 0, 0)) in _messages(wdt, "ValueError")
    _raises(ValueError, M.WDT, 1, 1000)
    assert "2000-01-01" in _row("time", "Epoch")
    c = VirtualClock()  # a board after power-on: time() counts from 2000-01-01
    assert c.time() == 0 and gmtime(c.time())[:3] == (2000, 1, 1)
    nvs = _row("esp32.NVS", "errors")
    codes = {n: int(v) for n, v in re.findall(r"(?:ESP_ERR_NVS_)?(NOT_FOUND|KEY_TOO_LONG|INVALID_LENGTH|INVALID_NAME)'?\)? \(?(-\d+)", nvs)}
    codes.setdefault("NOT_FOUND", int(re.search(r"OSError\((-\d+),'ESP_ERR_NVS_NOT_FOUND'\)", nvs).group(1)))
    assert codes == {"NOT_FOUND": N.NOT_FOUND, "KEY_TOO_LONG": N.KEY_TOO_LONG, "INVALID_LENGTH": N.INVALID_LENGTH,
                     "INVALID_NAME": N.INVALID_NAME}
    klen = int(re.search(r"≤(\d+) chars", _row("esp32.NVS", "limits")).group(1))
    N.wipe()
    store = N.NVS("a" * klen)
    store.set_i32("k" * klen, 1)
    e = _raises(OSError, store.set_i32, "k" * (klen + 1), 1)
    assert e.args[0] == N.KEY_TOO_LONG and e.args[1] == "ESP_ERR_NVS_KEY_TOO_LONG"
    assert _raises(OSError, N.NVS, "a" * (klen + 1)).args[0] == N.INVALID_NAME
    N.wipe()


@pytestmark_doc
def test_esp32_wake_pins_and_hold(clock):
    E.install("esp32")
    rtc_pins = _ranges(_row("esp32 module", "RTC pins").split("|")[1].split("S3:")[0].replace("ESP32:", ""))
    for g in (0, 2, 4, 5, 12, 16, 25, 33, 39):
        if g in rtc_pins:
            E.wake_on_ext0(pin=M.Pin(g), level=0)
        else:
            assert str(_raises(ValueError, E.wake_on_ext0, pin=M.Pin(g), level=0)) in _messages(
                _row("esp32 module", "wake_on_ext0"), "ValueError")
    E.gpio_deep_sleep_hold(True)
    assert E.held()
    E.install("esp32s3")  # "exists on ESP32 only (absent on S3)"
    assert "ESP32 only" in _row("esp32 module", "gpio_deep_sleep_hold")
    assert not hasattr(E, "gpio_deep_sleep_hold")
    E.install("esp32")
    E.uninstall()


@pytest.mark.parametrize("name", ["heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "tbeam"])
def test_before_deep_sleep_the_rails_go_off_and_stay_off(clock, name):
    import json

    from cnode.board import Hardware
    from citynode.hwsim.twin_axp192 import AXP192Twin

    board = json.loads((Path(__file__).resolve().parents[2] / "boards" / f"{name}.json").read_text())
    M.use(clock, board["chip"])
    E.install(board["chip"])
    try:
        hw = Hardware(board, M)
        vext = board.get("power", {}).get("vext")
        pmic = None
        if board.get("power", {}).get("pmic"):
            i2c = board["i2c"]
            pmic = M.attach_i2c(i2c["scl"], 0x34, AXP192Twin())
        hw.power_on(clock)
        if vext:
            assert M.wire(vext["pin"]).level == vext["active"]
        if pmic is not None:
            assert pmic.rail_on("ldo2") and pmic.rail_on("ldo3")
        hw.power_off()
        if vext:  # off, and held off through deep sleep (the ESP32 also needs gpio_deep_sleep_hold)
            assert M.wire(vext["pin"]).level != vext["active"]
            assert [p.hold for p in M.wire(vext["pin"]).pins][-1] is True
            assert E._state["hold"] == (board["chip"] == "esp32")
            hw.power_on(clock)  # the next boot releases the hold and switches the rail on
            assert M.wire(vext["pin"]).pins[-1].hold is False and M.wire(vext["pin"]).level == vext["active"]
        if pmic is not None:
            assert not pmic.rail_on("ldo2") and not pmic.rail_on("ldo3")  # the radio's and the GPS's rails
    finally:
        E.uninstall()


def test_the_watchdog_bites_in_virtual_time_through_sleeps():
    c = VirtualClock()
    M.use(c)
    w = M.WDT(timeout=1000)
    for _ in range(10):  # fed every 500 ms: never bites
        c.sleep_ms(500)
        w.feed()
    e = _raises(M.Reset, c.sleep_ms, 1500)  # time.sleep_ms never feeds it
    assert e.cause == M.WDT_RESET and M.reset_cause() == M.WDT_RESET
    assert c.monotonic_ms() == 6000  # it bit at the deadline, 1 s after the last feed, not at the end
    assert not isinstance(e, Exception)  # firmware's `except Exception` cannot swallow a reset
    M.use(c)
    M.WDT(timeout=2000)
    _raises(M.Reset, M.lightsleep, 3000)  # nor does lightsleep
    M.use(c)
    w = M.WDT(timeout=2000)
    _raises(M.DeepSleep, M.deepsleep, 60000)  # deep sleep reboots the chip: no watchdog until the next arms one
    c.sleep_ms(60000)
    M.use(c)
    w = M.WDT(timeout=1000)
    w2 = M.WDT(timeout=5000)  # a second WDT() re-times the one watchdog
    c.sleep_ms(3000)
    w2.feed()


def test_the_runner_arms_the_watchdog_first_and_a_crash_never_ends_in_the_repl(tmp_path, monkeypatch):
    from cnode import crash, runner

    monkeypatch.chdir(tmp_path)  # no board.json: the boot fails
    c = VirtualClock()
    M.use(c)
    e = _raises(M.DeepSleep, runner.main, M, c)
    assert e.ms == 2000 and crash.counts(M.RTC()) == (1, 1)
    assert "board.json" in crash.last(open)  # what failed, for the self-test and the console
    assert M._state["wdt"] is None  # deep sleep stopped it; it had been armed before the failing load
    e = _raises(M.DeepSleep, runner.main, M, c)
    assert e.ms == 4000 and crash.counts(M.RTC()) == (2, 2)  # a growing delay: a boot loop saves the battery


@pytestmark_doc
def test_wlan_is_the_ports(clock):
    from citynode.hwsim import network as W

    consts = _constants(_row("network.WLAN (ESP32)", "network.*"))
    assert len(consts) >= 10
    for name, value in consts.items():
        assert getattr(W, name) == value, name
    W.reset()
    assert str(_raises(ValueError, W.WLAN, 2)) in _messages(_row("network.WLAN (ESP32)", "WLAN(interface_id"),
                                                             "ValueError")
    wlan = W.WLAN(W.STA_IF)
    assert W.WLAN(W.STA_IF) is wlan  # one object per interface
    connect = _row("network.WLAN (ESP32)", "connect(")
    assert "positional-only" in connect
    assert str(_raises(OSError, wlan.connect, "cityap", "secret")) in _messages(connect, "OSError")  # not active
    wlan.active(True)
    _raises(TypeError, wlan.connect, ssid="cityap", key="secret")
    W.access_point("cityap", "secret", polls=2)
    wlan.connect("cityap", "wrong")
    assert not wlan.isconnected() and wlan.status() == W.STAT_WRONG_PASSWORD
    wlan.connect("cityap", "secret")
    assert [wlan.isconnected(), wlan.isconnected()] == [False, True] and wlan.status() == W.STAT_GOT_IP
    W.reset()


@pytestmark_doc
def test_ble_scanning_is_the_ports_and_feeds_the_counter(clock):
    from citynode.hwsim import bluetooth as B
    from citynode.hwsim.twin_mobility import BleCrowd
    from cnode.drivers.blecount import BleCounter

    B.reset()
    ble = B.BLE()
    assert B.BLE() is ble
    scan = _row("bluetooth.BLE (scanning)", "gap_scan(")
    assert "**positional only**" in scan
    errors = _row("bluetooth.BLE (scanning)", "errors")
    assert _raises(OSError, ble.gap_scan, 0).args[0] == int(re.search(r"inactive → `OSError\((\d+)\)", errors).group(1))
    ble.active(True)
    _raises(TypeError, ble.gap_scan, duration_ms=0)
    assert str(_raises(ValueError, ble.irq, 5)) in _messages(_row("bluetooth.BLE (scanning)", "irq(handler)"),
                                                             "ValueError")
    crowd = BleCrowd()
    for i in range(12):
        crowd.add(1, bytes((0xC0, 0, 0, 0, 0, i)), -60, 0, 30000)
    crowd.add(1, bytes(6), -99, 0, 30000)  # too far away for the counter's RSSI floor
    ble.radiate(crowd)
    counter = BleCounter(clock, urandom=lambda n: bytes(range(n)))
    events = []
    ble.irq(lambda e, d: (events.append(e), counter.irq(e, d)))
    ble.gap_scan(20000, 1280000, 11250)
    assert _raises(OSError, ble.gap_scan, 0).args[0] == int(re.search(r"already running → `OSError\((\d+)\)",
                                                                       errors).group(1))
    ble.advance(30000)
    done = int(re.search(r"_IRQ_SCAN_DONE = (\d+)", DOC.read_text()).group(1))
    assert events[-1] == done and events.count(done) == 1
    counter.read()
    assert counter.values[0] == 12  # distinct advertisers above the RSSI floor, each counted once

"""The hardware double against the ESP32 port's reference (../shared/docs/esp32-api.md, read from MicroPython
1.26.1's C sources): its tables' constants, pin sets, limits and quoted errors are parsed (esp32doc.py) and the
double (citynode.sim.hwsim.machine, .esp32, .nvs, .network, .bluetooth) must match them, so it cannot drift from the
port again. Plus the watchdog biting in virtual time (no document needed)."""
from __future__ import annotations

import re
from pathlib import Path

import esp32doc as D
import pytest

from citynode.sim.hwsim import bluetooth as B
from citynode.sim.hwsim import esp32 as E
from citynode.sim.hwsim import machine as M
from citynode.sim.hwsim import network as W
from citynode.sim.hwsim import nvs as N
from citynode.sim.hwsim.clock import VirtualClock, gmtime

DOC = D.DOC
_row = D.row
_messages = D.messages
_ranges = D.ranges
esp32doc = pytest.mark.esp32doc


def _raises(exc, fn, *args, **kw) -> BaseException:
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    return e.value


@pytest.fixture
def clock():
    c = VirtualClock()
    M.use(c)
    E.reset()
    N.wipe()
    W.reset()
    B.reset()
    yield c
    N.wipe()


def _target(heading: str):
    """The double's object whose constants a section lists, or None where the port has something the double
    does not model (esp32.Partition, bluetooth, time, the built-in modules)."""
    if heading.startswith("machine module"):
        return M
    if heading.startswith("esp32 module"):
        return E
    mod, _, cls = heading.split()[0].partition(".")
    base = {"machine": M, "esp32": E}.get(mod)
    return getattr(base, cls, None) if base is not None and cls else None


@esp32doc
def test_every_constant_the_doc_lists_is_the_ports():
    """Each NAME=value in a row of a section the double implements (both cells; the S3's part left out) is an
    attribute of the double with that value and type. network.* rows are module constants of network; the WLAN
    class's own Constants row abbreviates its names (SEC_OPEN=0, WEP=1, ...) and is not read."""
    seen: dict = {}
    for head, rows in D.sections().items():
        obj = W if head.startswith("network.") else _target(head)
        if obj is None:
            continue
        for api, text in rows:
            if not D.current(api) or (obj is W and not api.startswith("network.*")):
                continue
            for cell in (api, text):
                for name, value in D.constants(cell.split("S3:")[0]).items():
                    got = getattr(obj, name, "missing")
                    assert got == value and type(got) is type(value), (head, api, name, value, got)
                    seen.setdefault(getattr(obj, "__name__", head), set()).add(name)
    for where in ("citynode.sim.hwsim.machine", "Pin", "UART", "SPI", "ADC", "citynode.sim.hwsim.esp32",
                  "citynode.sim.hwsim.network"):
        assert seen.get(where), (where, sorted(seen))
    assert sum(len(v) for v in seen.values()) >= 50, seen  # 58 today: the parser still reads the tables


@esp32doc
def test_a_changed_constant_in_the_doc_would_fail():
    consts = D.constants(_row("machine.Pin", "Constants"))
    assert consts["PULL_UP"] == M.Pin.PULL_UP == 2 and consts["DRIVE_3"] == 3
    assert D.constants(_row("machine.Pin", "Constants").replace("PULL_UP=2", "PULL_UP=4"))["PULL_UP"] != M.Pin.PULL_UP


@esp32doc
@pytest.mark.parametrize("chip,row", [("esp32", "valid ids ESP32")])
def test_exactly_the_ports_pins_exist(clock, chip, row):
    text = _row("machine.Pin", row)
    ids = _ranges(text.split("|")[1].split("(")[0])
    assert ids == set(range(0, 24)) | {25, 26, 27} | set(range(32, 40))  # the document, as read
    for g in range(0, 49):
        if g in ids:
            M.Pin(g)
        else:
            assert any(D.matches(_raises(ValueError, M.Pin, g), d) for d in D.errors(text))
    M.Pin(34, M.Pin.IN)
    # pull bits as the port reads them: &1 down, &2 up
    assert M.Pin(21, M.Pin.IN, M.Pin.PULL_UP).value() == 1 and M.Pin(22, M.Pin.IN, M.Pin.PULL_DOWN).value() == 0


@esp32doc
def test_the_adc_pins_are_the_ports(clock):
    row = _row("machine.ADC / ADCBlock", "ADC pins ESP32")
    adc_pins = row.split("S3:")[0]
    pins = {int(x) for x in re.findall(r"\d+", adc_pins.split("ADC1:")[1].split("(ch")[0])}
    pins |= {int(x) for x in re.findall(r"\d+", adc_pins.split("ADC2:")[1].split("(ch")[0])}
    assert len(pins) == 18
    for g in sorted(set(range(0, 40)) - {24, 28, 29, 30, 31}):
        if g in pins:
            M.ADC(M.Pin(g))
        else:
            assert any(D.matches(_raises(ValueError, M.ADC, M.Pin(g)), d) for d in D.errors(row))
    assert "Default atten = ATTN_11DB" in _row("machine.ADC / ADCBlock", "ADC(pin")
    assert M.ADC(M.Pin(35))._atten == M.ADC.ATTN_11DB
    M.freq(80_000_000)
    assert M.freq() == 80_000_000


def _bus():
    return M.I2C(0, scl=M.Pin(22), sda=M.Pin(21))


def _stuck_bus():
    b = _bus()
    b.stuck = True
    b.readfrom(0x76, 1)


def _ext0_twice():
    M.Pin(4).irq(trigger=M.Pin.WAKE_LOW, wake=M.DEEPSLEEP)
    M.Pin(2).irq(trigger=M.Pin.WAKE_HIGH, wake=M.DEEPSLEEP)


def _touch_then(fn):
    def run():
        E.wake_on_touch(True)
        fn()
    return run


def _ext0_then_touch():
    E.wake_on_ext0(pin=M.Pin(4), level=E.WAKEUP_ALL_LOW)
    E.wake_on_touch(True)


def _dead_spi():
    s = M.SPI(1, sck=M.Pin(18))
    s.deinit()
    s.write(b"x")


def _dead_adc():
    a = M.ADC(M.Pin(35))
    a.deinit()
    a.read()


def _nvs_missing():
    N.NVS("cn_mac").get_i32("nothere")


def _wlan_off_connect():
    W.WLAN(W.STA_IF).connect("cityap", "secret")


def _wlan_rssi(param):
    def run():
        w = W.WLAN(W.STA_IF)
        w.active(True)
        w.status(param)
    return run


# (section, row, what) -> every error the double can meet: it must raise one the row quotes, type and message
_P = "machine.Pin"
_I = "machine.I2C (hardware) / SoftI2C"
_U = "machine.UART"
_S = "machine.SPI / SoftSPI"
_A = "machine.ADC / ADCBlock"
_MM = "machine module (functions, constants)"
ERRORS = [
    ("Arg errors", "", lambda: M.Pin(4, M.Pin.IN, speed=1)),
    ("Arg errors", "", lambda: M.I2C(0, 22, 21)),
    ("Arg errors", "", lambda: M.SoftI2C(sda=M.Pin(21))),
    ("Arg errors", "", lambda: M.lightsleep(ms=10)),
    ("Arg errors", "", lambda: _bus().writeto(0x76, b"\x00", stop=False)),
    ("Arg errors", "", lambda: M.deepsleep(1.5)),
    ("Arg errors", "", lambda: M.UART(1, 9600, tx=17, rx=16, parity_bits=1)),
    ("Arg errors", "", lambda: M.SPI(1, 1000000, 0)),
    ("Arg errors", "", lambda: M.ADC(M.Pin(35), 3)),
    ("Arg errors", "", lambda: M.WDT(0, 1000, 1)),
    ("Arg errors", "", lambda: E.wake_on_ext0(pin=None, lvl=1)),
    ("Arg errors", "", lambda: _bus().readfrom_mem(0x76, 0xD0, 1, size=8)),
    (_MM, "freq(", lambda: M.freq(100_000_000)),
    (_P, "valid ids ESP32", lambda: M.Pin(24)),
    (_P, "mode", lambda: M.Pin(35, M.Pin.OUT)),
    (_P, "irq(", lambda: M.Pin(4).irq(handler=None, hard=True)),
    (_P, "irq(", lambda: M.Pin(4).irq(handler=None, priority=1)),
    (_P, "irq wake", lambda: M.Pin(4).irq(trigger=M.Pin.WAKE_LOW, wake=1)),
    (_P, "irq wake", lambda: M.Pin(5).irq(trigger=M.Pin.WAKE_LOW, wake=M.DEEPSLEEP)),
    (_P, "irq wake", _ext0_twice),
    (_P, "irq wake", _touch_then(lambda: M.Pin(4).irq(trigger=M.Pin.WAKE_LOW, wake=M.DEEPSLEEP))),
    (_I, "I2C(id=0", lambda: M.I2C(2, scl=M.Pin(22), sda=M.Pin(21))),
    (_I, "I2C(-1", lambda: M.I2C()),
    (_I, "init()", lambda: _bus().start()),
    (_I, "init()", lambda: _bus().readinto(bytearray(1))),
    (_I, "readfrom_mem(", lambda: _bus().readfrom_mem(0x76, 0xD0, 1, addrsize=12)),
    (_I, "readfrom_mem(", lambda: _bus().writeto_mem(0x76, 0xD0, b"x", addrsize=40)),
    (_I, "errors", lambda: _bus().readfrom(0x50, 1)),
    (_I, "errors", _stuck_bus),
    (_U, "UART(id", lambda: M.UART(3)),
    (_U, "bits", lambda: M.UART(1, 9600, 9)),
    (_U, "stop", lambda: M.UART(1, 9600, 8, None, 3)),
    (_U, "invert / flow", lambda: M.UART(1, invert=1)),
    (_U, "invert / flow", lambda: M.UART(1, flow=4)),
    (_U, "txbuf/rxbuf", lambda: M.UART(0, 115200, rxbuf=512)),
    (_U, "irq(", lambda: M.UART(0).irq(handler=None)),
    (_U, "irq(", lambda: M.UART(1).irq(handler=5)),
    (_U, "irq(", lambda: M.UART(1).irq(trigger=M.UART.IRQ_RX | 8)),
    (_U, "irq(", lambda: M.UART(1).irq(handler=None, hard=True)),
    (_S, "SPI(id", lambda: M.SPI(3)),
    (_S, "bits≤0", lambda: M.SPI(1, bits=0)),
    (_S, "read(n", lambda: M.SPI(1).write_readinto(b"ab", bytearray(1))),
    (_S, "read(n", lambda: M.SPI(1).write(b"")),
    (_S, "read(n", _dead_spi),
    (_S, "SoftSPI(", lambda: M.SoftSPI(bits=7, sck=M.Pin(18), mosi=M.Pin(23), miso=M.Pin(19))),
    (_S, "SoftSPI(", lambda: M.SoftSPI(sck=M.Pin(18))),
    (_S, "SoftSPI(", lambda: M.SPI()),
    (_A, "ADC pins ESP32", lambda: M.ADC(M.Pin(5))),
    (_A, "atten range", lambda: M.ADC(M.Pin(35), atten=4)),
    (_A, "atten(a)", lambda: M.ADC(M.Pin(35)).width(13)),
    (_A, "deinit()", _dead_adc),
    ("machine.RTC", "RTC()", lambda: M.RTC(1)),
    ("machine.RTC", "datetime(t)", lambda: M.RTC().datetime((2026, 1, 1))),
    ("machine.RTC", "datetime(t)", lambda: M.RTC().init((2026, 1, 1, 0, 0, 0))),
    ("machine.RTC", "memory(", lambda: M.RTC().memory(bytes(2049))),
    ("machine.WDT", "WDT(id=0", lambda: M.WDT(1)),
    ("machine.WDT", "WDT(id=0", lambda: M.WDT(timeout=0)),
    ("esp32 module", "wake_on_ext0(", lambda: E.wake_on_ext0(pin=M.Pin(5), level=0)),
    ("esp32 module", "wake_on_ext0(", _touch_then(lambda: E.wake_on_ext0(pin=M.Pin(4), level=0))),
    ("esp32 module", "wake_on_ext1(", lambda: E.wake_on_ext1([M.Pin(4), M.Pin(5)], E.WAKEUP_ANY_HIGH)),
    ("esp32 module", "wake_on_touch(", _ext0_then_touch),
    ("esp32.NVS", "errors", _nvs_missing),
    ("network.WLAN (ESP32)", "WLAN(interface_id", lambda: W.WLAN(2)),
    ("network.WLAN (ESP32)", "connect(", _wlan_off_connect),
    ("network.WLAN (ESP32)", "status('rssi')", _wlan_rssi("rssi")),
    ("network.WLAN (ESP32)", "status('rssi')", _wlan_rssi("channel")),
    ("bluetooth.BLE (scanning)", "irq(handler)", lambda: B.BLE().irq(5)),
    ("bluetooth.BLE (scanning)", "errors", lambda: B.BLE().gap_scan(0)),
]
_hit: set = set()


@esp32doc
@pytest.mark.parametrize("section,api,fn", ERRORS, ids=[f"{s.split()[0]}:{a}:{i}" for i, (s, a, _) in
                                                          enumerate(ERRORS)])
def test_the_double_raises_what_the_port_raises(clock, section, api, fn):
    text = _row(section, api) if section != "Arg errors" else D.sections()["Arg errors"][0][1]
    with pytest.raises(BaseException) as e:
        fn()
    documented = D.errors(text)
    if not documented:  # the row names the type only ("no args (else TypeError)")
        assert type(e.value).__name__ in text, (text, e.value)
        return
    hit = [d for d in documented if D.matches(e.value, d)]
    assert hit, f"{type(e.value).__name__}{e.value.args} is not among the row's {documented}"
    _hit.update((section, d[0], str(getattr(d[1], "pattern", d[1]))) for d in hit)


# errors the port raises from what the double does not model (and why); any other quoted error of these sections
# must be raised by some case above
NOT_MODELLED = {
    ("machine.ADC / ADCBlock", "invalid block id"): "no ADCBlock",
    ("machine.ADC / ADCBlock", "no matching ADC"): "no ADCBlock",
}


@esp32doc
def test_every_quoted_error_of_the_doubled_modules_is_checked():
    """Run after the parametrized test (same module, collection order): a new error in the document's machine
    and esp32 sections must get a case (or a reason it is not modelled)."""
    if len(_hit) < 20:
        pytest.skip("run with the parametrized error cases (not selected)")
    missing = []
    for head, rows in D.sections().items():
        if not (head.startswith("machine") or head.startswith("esp32 module") or head.startswith("esp32.NVS")):
            continue
        for api, text in rows:
            if not D.current(api):
                continue
            for exc, what in D.errors(api + " | " + text):
                key = (head, exc, str(getattr(what, "pattern", what)))
                plain = re.sub(r"\\(.)", r"\1", key[2]).rstrip("$")
                if key not in _hit and (head, plain) not in NOT_MODELLED:
                    missing.append(key)
    assert not missing, missing


@esp32doc
def test_the_uart_buffers_and_irq_are_the_ports(clock):
    buf = _row("machine.UART", "txbuf/rxbuf")
    errno, name = re.search(r"OSError\((\d+),\s*'(\w+)'\)", buf).groups()
    for kw in ({"rxbuf": 128}, {"txbuf": 100}):
        e = _raises(OSError, M.UART, 1, 9600, **kw)
        assert e.args[:2] == (int(errno), name)
    M.UART(0, 115200, rxbuf=256)  # the REPL's buffers may be named, not changed
    u = M.UART(2, 9600, tx=17, rx=16, txbuf=0)
    got = []
    irq = u.irq(handler=got.append, trigger=M.UART.IRQ_RX)
    assert irq.trigger() == M.UART.IRQ_RX
    u.feed(b"$GP")
    assert got == [u] and u.read() == b"$GP" and u.read() is None  # no data: None, as the stream does


@esp32doc
def test_rtc_memory_wdt_time_and_nvs_limits_are_the_ports(clock):
    mem = _row("machine.RTC", "memory(")
    limit = int(re.search(r"max \**(\d+)\** bytes", mem).group(1))
    rtc = M.RTC()
    assert M.RTC() is rtc and "singleton" in _row("machine.RTC", "RTC()")
    rtc.memory(bytes(limit))
    assert rtc.memory() == bytes(limit)
    M.power_on()
    assert rtc.memory() == b"" and M.reset_cause() == M.PWRON_RESET  # cleared on power-on only
    assert "2000-01-01" in _row("time", "Epoch")
    c = VirtualClock()  # a board after power-on: time() counts from 2000-01-01
    assert c.time() == 0 and gmtime(c.time())[:3] == (2000, 1, 1)
    assert "weekday ignored; item7 = µs" in _row("machine.RTC", "datetime(t)")
    rtc.datetime((2026, 3, 1, 4, 12, 30, 5, 250000))  # the weekday given is wrong: ignored
    assert rtc.datetime()[:3] == (2026, 3, 1) and rtc.datetime()[3] == 6 and rtc.datetime()[4:7] == (12, 30, 5)
    assert rtc.datetime()[7] == 250000 and gmtime(clock.time())[:6] == (2026, 3, 1, 12, 30, 5)
    assert "(y,m,d,h,mi,s,_,µs)" in _row("machine.RTC", "init(t)")
    rtc.init((2026, 3, 2, 7, 15, 0, 0, 0))
    assert rtc.datetime()[:7] == (2026, 3, 2, 0, 7, 15, 0)
    nvs = _row("esp32.NVS", "errors")
    codes = {n: int(v) for n, v in re.findall(
        r"(?:ESP_ERR_NVS_)?(NOT_FOUND|KEY_TOO_LONG|INVALID_LENGTH|INVALID_NAME)'?\)? \(?(-\d+)", nvs)}
    codes.setdefault("NOT_FOUND", int(re.search(r"OSError\((-\d+),'ESP_ERR_NVS_NOT_FOUND'\)", nvs).group(1)))
    assert codes == {"NOT_FOUND": N.NOT_FOUND, "KEY_TOO_LONG": N.KEY_TOO_LONG, "INVALID_LENGTH": N.INVALID_LENGTH,
                     "INVALID_NAME": N.INVALID_NAME}
    klen = int(re.search(r"≤(\d+) chars", _row("esp32.NVS", "limits")).group(1))
    store = E.NVS("a" * klen)
    store.set_i32("k" * klen, 1)
    e = _raises(OSError, store.set_i32, "k" * (klen + 1), 1)
    assert e.args == (N.KEY_TOO_LONG, "ESP_ERR_NVS_KEY_TOO_LONG")
    assert _raises(OSError, E.NVS, "a" * (klen + 1)).args == (N.INVALID_NAME, "ESP_ERR_NVS_INVALID_NAME")
    store.set_blob("b", b"12345")
    assert _raises(OSError, store.get_blob, "b", bytearray(4)).args == (N.INVALID_LENGTH, "ESP_ERR_NVS_INVALID_LENGTH")


@esp32doc
def test_esp32_wake_pins_and_hold(clock):
    E.install("esp32")
    rtc_pins = _ranges(_row("esp32 module", "RTC pins").split("|")[1].split("S3:")[0].replace("ESP32:", ""))
    for g in (0, 2, 4, 5, 12, 16, 25, 33, 39):
        if g in rtc_pins:
            E.wake_on_ext0(pin=M.Pin(g), level=0)
        else:
            assert str(_raises(ValueError, E.wake_on_ext0, pin=M.Pin(g), level=0)) in _messages(
                _row("esp32 module", "wake_on_ext0"), "ValueError")
    E.wake_on_ext0(pin=None)
    p = M.Pin(4)
    p.irq(trigger=M.Pin.WAKE_LOW, wake=M.DEEPSLEEP)  # the same ext0 source as esp32.wake_on_ext0
    assert M._wake["ext0"] == 4 and M._wake["ext0_level"] == 0
    p.irq(handler=None)  # an ordinary IRQ on the pin gives the wake source up
    assert M._wake["ext0"] is None
    E.wake_on_ext1([M.Pin(32), M.Pin(33)], E.WAKEUP_ANY_HIGH)
    assert "`[]` to clear" in _row("esp32 module", "wake_on_ext1")
    E.wake_on_ext1(None, E.WAKEUP_ALL_LOW)
    assert M._wake["ext1"] == (32, 33)
    E.wake_on_ext1([])
    assert M._wake["ext1"] == ()
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
    from citynode.sim.hwsim.twin_axp192 import AXP192Twin

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


def _watchdog(timeout):
    c = VirtualClock()
    M.use(c)
    M.power_on()
    return c, M.WDT(timeout=timeout)


def test_the_watchdog_bites_when_sleep_ms_passes_its_timeout():
    c, _ = _watchdog(1000)
    e = _raises(M.Reset, c.sleep_ms, 1500)  # time.sleep_ms never feeds it
    assert e.cause == M.WDT_RESET and M.reset_cause() == M.WDT_RESET
    assert c.monotonic_ms() == 1000  # it bit at the deadline, not at the end of the sleep
    assert not isinstance(e, Exception)  # firmware's `except Exception` cannot swallow a reset
    assert M._state["wdt"] is None  # the chip rebooted: the firmware arms a new one at boot


def test_a_watchdog_fed_in_time_never_bites():
    c, w = _watchdog(1000)
    for _ in range(20):  # fed every 500 ms
        c.sleep_ms(500)
        w.feed()
    c.sleep_ms(999)
    assert M.reset_cause() == M.PWRON_RESET
    e = _raises(M.Reset, c.sleep_ms, 2)
    assert e.cause == M.WDT_RESET and c.monotonic_ms() == 11000


def test_lightsleep_does_not_feed_the_watchdog():
    c, _ = _watchdog(1000)
    e = _raises(M.Reset, M.lightsleep, 2000)
    assert e.cause == M.WDT_RESET and c.monotonic_ms() == 1000


def test_deepsleep_stops_the_watchdog():
    c, _ = _watchdog(1000)
    _raises(M.DeepSleep, M.deepsleep, 60000)
    assert M.reset_cause() == M.DEEPSLEEP_RESET
    c.sleep_ms(60000)  # no watchdog while the chip sleeps (nor after, until the next boot arms one)
    assert M.reset_cause() == M.DEEPSLEEP_RESET


def test_one_watchdog_a_second_wdt_re_times_it():
    c, w = _watchdog(1000)
    w2 = M.WDT(timeout=5000)
    c.sleep_ms(3000)
    w.feed()  # either object feeds the one watchdog
    c.sleep_ms(4000)
    w2.feed()
    assert M.reset_cause() == M.PWRON_RESET
    _raises(M.Reset, c.sleep_ms, 5001)


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


@esp32doc
def test_wlan_is_the_ports(clock):
    from citynode.sim.hwsim import network as W

    consts = D.constants(_row("network.WLAN (ESP32)", "network.*"))
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


@esp32doc
def test_ble_scanning_is_the_ports_and_feeds_the_counter(clock):
    from citynode.sim.hwsim import bluetooth as B
    from citynode.sim.hwsim.twin_mobility import BleCrowd
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

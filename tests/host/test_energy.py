"""The energy meter, the current model and the cell: time per state as twins report it, currents looked up with
their rules (TX rows by PA pin and power), the Li-ion curve; the twins of the radio chips under micropython-lib's
driver report the states the driver puts them in; light sleep in the ESP32 double."""
from __future__ import annotations

import json

import pytest

from citynode.energy import battery, model
from citynode.energy.meter import Meter
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.power import Powered

FAKE = {
    "parts": {
        "chip": {"states": {"idle": {"mA": 30.0}, "deep_sleep": {"mA": 0.01}, "boot": {"mA": 40.0, "ms": 500}}},
        "sens": {"states": {"sleep": {"mA": 0.001}, "forced": {"mA": 1.0}}},
        "rad": {"states": {"sleep": {"mA": 0.0002}, "rx": {"LDO": {"mA": 8.0}, "DCDC": {"mA": 4.0}},
                           "tx": {"PA_BOOST": {"17": {"mA": 90.0}, "20": {"mA": 120.0}},
                                  "RFO": {"13": {"mA": 29.0}}}}},
    },
    "boards": {"b1": {"quiescent": [{"item": "ldo", "mA": 0.05}, {"item": "divider", "mA": 0.02}],
                      "cell": {"mAh": 3000}},
               "b2": {"same_as": "b1"}},
    "li_ion_ocv": {"points": [[0, 3.0], [10, 3.3], [50, 3.7], [100, 4.2]]},
}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    p = tmp_path / "parts.json"
    p.write_text(json.dumps(FAKE))
    monkeypatch.setattr(model, "DATA", p)
    model.data.cache_clear()
    yield
    model.data.cache_clear()


class Chip(Powered):
    power_state = "sleep"


def test_tx_current_by_pin_and_power(fake):
    assert model.current_ma("rad", "tx", "PA_BOOST:17") == 90.0
    assert model.current_ma("rad", "tx", "PA_BOOST:18.5") == pytest.approx(105.0)  # linear between rows
    assert model.current_ma("rad", "tx", "PA_BOOST:14") == 90.0  # below the lowest row: that row (upper bound)
    assert model.current_ma("rad", "tx", "PA_BOOST:22") == 120.0
    assert model.current_ma("rad", "rx", "DCDC") == 4.0
    assert model.current_ma("rad", "off") == 0.0
    with pytest.raises(model.ModelError, match="no TX rows for PA 'LDO'"):
        model.current_ma("rad", "tx", "LDO:14")
    with pytest.raises(model.ModelError, match="no figure for state 'cad'"):
        model.current_ma("rad", "cad")
    with pytest.raises(model.ModelError, match="no current figures for part 'nope'"):
        model.current_ma("nope", "idle")


def test_board_quiescent_and_same_as(fake):
    assert model.current_ma("board:b2", "on") == pytest.approx(0.07)
    assert model.lowest("rad") == ("sleep", 0.0002)
    with pytest.raises(model.ModelError, match="no energy facts for board 'b3'"):
        model.quiescent_ma("b3")


def test_meter_splits_a_state_that_ends_by_itself(fake):
    clock = VirtualClock()
    m = Meter(clock.monotonic_us)
    s = Chip()
    m.watch("sens", s, "sens")
    clock.sleep_ms(1000)
    s._power("forced", for_us=8000, then="sleep")
    assert s.power_state == "sleep"
    clock.sleep_ms(3)
    assert m.states()["sens"] == ("sens", "forced", None)
    clock.sleep_ms(997)
    assert m.states()["sens"] == ("sens", "sleep", None)
    u = m.usage()
    t = {r.state: r.seconds for r in u.rows}
    assert t == {"sleep": pytest.approx(1.992), "forced": pytest.approx(0.008)}
    assert u.total_mah() == pytest.approx((1.992 * 0.001 + 0.008 * 1.0) / 3600)


def test_meter_extra_time_is_booked_without_moving_the_clock(fake):
    clock = VirtualClock()
    m = Meter(clock.monotonic_us)
    m.add("cpu", "chip", "idle")
    m.add("board", "board:b1", "on")
    clock.sleep_ms(2000)
    m.set("cpu", "deep_sleep")
    m.extra("cpu", "boot", 500_000)
    clock.sleep_ms(298_000)
    assert m.now_ma() == pytest.approx(0.01 + 0.07)
    u = m.usage()
    by = {(r.component, r.state): r.mah for r in u.rows}
    assert by[("cpu", "idle")] == pytest.approx(2 * 30 / 3600)
    assert by[("cpu", "boot")] == pytest.approx(0.5 * 40 / 3600)
    assert by[("cpu", "deep_sleep")] == pytest.approx(298 * 0.01 / 3600)
    assert by[("board", "on")] == pytest.approx(300 * 0.07 / 3600)
    assert m.events[("cpu", "boot")] == 1


def test_li_ion_curve_and_usable_charge(fake):
    assert battery.volts(1.0) == pytest.approx(4.2)
    assert battery.volts(0.3) == pytest.approx(3.5)
    assert battery.soc_at(3.3) == pytest.approx(0.10)
    assert battery.usable_mah(3000) == pytest.approx(2700)
    drawn = [0.0]
    cell = battery.Cell(3000, lambda: drawn[0])
    assert cell.millivolts() == 4200
    drawn[0] = 1500  # half: 3.7 V
    assert cell.millivolts() == 3700


def test_lightsleep_loses_what_a_uart_receives_and_tells_the_cpu_state():
    clock = VirtualClock()
    hw.use(clock)
    seen = []
    hw._state["cpu"] = seen.append

    class Talker:  # sends one byte every 100 ms
        def __init__(self):
            self.t = 0

        def pump(self, uart, ms):
            while self.t + 100 <= ms:
                self.t += 100
                uart.feed(b"x")

    u = hw.UART(1, 9600, tx=25, rx=39)
    u.attach(Talker())
    clock.sleep_ms(250)
    hw.lightsleep(1000)
    assert u.any() == 2  # the two bytes before the sleep; the ten during it are lost
    clock.sleep_ms(100)
    assert u.any() == 3
    assert seen == ["light_sleep", "idle"]
    with pytest.raises(hw.DeepSleep):
        hw.deepsleep(1000)
    assert seen[-1] == "deep_sleep"
    hw._state["cpu"] = None


@pytest.mark.mipindex
def test_the_sx1276_twin_reports_what_the_driver_sets(lora_lib):
    from citynode.sim.hwsim import lora_lib as driver
    from citynode.sim.hwsim.radio import Air
    from citynode.sim.hwsim.twin_sx127x import SX1276Twin
    from cnode.loraradio import radio

    clock = VirtualClock()
    hw.use(clock)
    driver.load(clock, str(lora_lib))
    t = SX1276Twin(clock, Air(clock), 5, 18, reset=23, dio0=26, dio1=33, pa_pin="PA_BOOST")
    seen = []

    class Rec:
        def change(self, twin, state, detail, for_us, then):
            seen.append((state, detail))

    t.meter = Rec()
    m = radio({"type": "sx1276", "tx_ant": "PA_BOOST", "pins": {"sck": 5, "mosi": 27, "miso": 19, "cs": 18,
                                                               "reset": 23, "dio0": 26, "dio1": 33}}, hw)
    m.configure({"freq_khz": 868100, "sf": 9, "bw": "125", "output_power": 14, "syncword": 0x34,
                 "invert_iq_tx": False})
    m.send(b"\x40" + bytes(12))
    assert ("tx", "PA_BOOST:14") in seen  # the current the datasheet gives for PA_BOOST, at 14 dBm
    assert seen[-1] == ("standby", None)  # TxDone: the chip returns to standby by itself
    m.sleep()
    assert seen[-1] == ("sleep", None) and t.power_state == "sleep"


def test_the_sx1262_twin_stays_on_its_ldo_unless_the_dcdc_is_selected():
    from citynode.sim.hwsim.radio import Air
    from citynode.sim.hwsim.twin_sx126x import SX1262Twin

    clock = VirtualClock()
    hw.use(clock, "esp32s3")
    t = SX1262Twin(clock, Air(clock), 9, 8, 13, dio1=14, reset=12)
    assert t.dcdc is False  # DS 13.1.15: the LDO only after reset; micropython-lib's driver never changes it
    spi = hw.SPI(1, sck=hw.Pin(9), mosi=hw.Pin(10), miso=hw.Pin(11))
    cs = hw.Pin(8, hw.Pin.OUT, value=1)
    cs(0)
    spi.write(bytes((0x96, 0x01)))  # SetRegulatorMode: DC-DC
    cs(1)
    assert t.dcdc is True


def test_the_sx1262_twin_reports_tx_by_the_pa_set_up():
    """TX current follows the PA configuration (DS 13.1.14.1): micropython-lib keeps the +22 dBm set-up for any
    power but 20/17/14 dBm (HP rows), and uses the optimal settings for those (HPOPT rows)."""
    from citynode.sim.hwsim.radio import Air
    from citynode.sim.hwsim import twin_sx126x as T

    clock = VirtualClock()
    hw.use(clock, "esp32s3")
    t = T.SX1262Twin(clock, Air(clock), 9, 8, 13, dio1=14, reset=12)
    seen = []

    class Rec:
        def change(self, twin, state, detail, for_us, then):
            seen.append((state, detail))

    t.meter = Rec()
    t.pa, t.tx_power = (0x04, 0x07, 0x00, 0x01), 12
    t.mode = T.TX
    t.pa, t.tx_power = (0x02, 0x02, 0x00, 0x01), 22
    t.mode = T.TX
    assert seen == [("tx", "HP:12"), ("tx", "HPOPT:14")]  # the 14 dBm optimal set-up with SetTxParams +22


def test_a_deep_sleeping_fleet_node_naps_its_pm_warm_up():
    """The fleet's node is built as the Runner builds it: the SDS011's 30 s warm-up is light sleep, and the
    battery channel reads the cell curve at the charge the meter counted."""
    from citynode.sim.fleet.sim import SimConfig, Simulation

    sim = Simulation(SimConfig(nodes=1, days=0.05, deep_sleep=True, drain_s=0))
    res = sim.run()
    w = sim.worlds[0]
    rows = {(x.component, x.state): x.seconds for x in w.meter.usage().rows}
    wakes = w.boots
    assert wakes >= 10
    assert rows[("cpu", "light_sleep")] == pytest.approx(30.0 * (wakes - 1), abs=31)  # the last may be under way
    assert rows[("cpu", "idle")] < rows[("cpu", "light_sleep")]  # awake only for the join and the windows
    n = res.nodes[0]
    assert n["mah_per_day"] > 0 and n["battery_days"] > 0 and 3000 < n["battery_mv"] <= 4200

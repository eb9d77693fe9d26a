"""The energy budget of every board from its firmware on its twins (citynode.energy.run): in deep sleep every chip
is in its lowest state, so the node draws the datasheet floor; the warm-up of a PM sensor is spent in light sleep
with the radio asleep; `citynode budget` answers, and answers the reverse question."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from citynode.device.boards import get_board
from citynode.energy import model
from citynode.energy.budget import budget, shortest_interval
from citynode.energy.run import BudgetError, run, with_sensors

BOARDS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "boards").glob("*.json"))
# boards that deep-sleep between cycles: not the LoRa-E5 reference wiring (it counts pulses in RAM) nor the
# virtual board (the pty node, which stays in its process)
DEEP = [b for b in BOARDS if b not in ("esp32-devkit-lora-e5", "virtual")]


def _board(name):
    return get_board(name).node_config()


def floor_ma(board: dict, states: dict) -> float:
    """The datasheet floor of the node asleep: the board's quiescent draw, plus each chip in its lowest state
    (nothing for a chip whose supply rail is off)."""
    total = model.quiescent_ma(board["name"])
    for name, (part, state, _) in states.items():
        if name == "board":
            continue
        total += 0.0 if state == "off" else model.lowest(part)[1]
    return total


def test_every_board_is_checked():
    assert BOARDS == ["esp32-devkit-lora-e5", "heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "tbeam",
                      "ttgo-lora32-v2.1", "virtual"]


@pytest.mark.parametrize("name", DEEP)
def test_in_deep_sleep_every_chip_is_in_its_lowest_state(name, lora_lib_or_none):
    b = _board(name)
    # a BLE counter keeps its board awake (it counts in RAM): the board's other chips are checked without it
    b["sensors"] = [s for s in b["sensors"] if s["driver"] != "blecount"]
    r = run(b, days=0.02, lib_dir=lora_lib_or_none)  # about 29 virtual minutes: six wakes
    assert r.wakes >= 5
    for comp, (part, state, _) in r.sleep_states.items():
        if comp in ("board", "pmic"):
            continue
        assert state == "off" or state == model.lowest(part)[0], (comp, part, state)
    assert r.sleep_states["cpu"][1] == "deep_sleep"
    assert r.sleep_ma == pytest.approx(floor_ma(b, r.sleep_states), rel=1e-9)
    assert r.sleep_ma < 2.0  # a sleeping node draws (well) under 2 mA on every board we ship


@pytest.fixture(scope="module")
def lora_lib_or_none(request):
    """micropython-lib's driver when the mip index is there (then the chip's twin runs under it)."""
    shared = Path(__file__).resolve().parents[3] / "shared" / "mip-index"
    if not shared.exists():
        return None
    return str(request.getfixturevalue("lora_lib"))


def test_a_pm_sensors_warm_up_is_spent_in_light_sleep_with_the_radio_asleep():
    b = with_sensors(_board("ttgo-lora32-v2.1"), ["sds011"])
    r = run(b, days=0.05, interval_s=300)
    rows = {(x.component, x.state): x.seconds for x in r.usage.rows}
    wakes = r.wakes
    assert rows[("cpu", "light_sleep")] == pytest.approx(30.0 * wakes, rel=0.02)  # SDS011 warm-up: 30 s a wake
    assert rows.get(("cpu", "idle"), 0.0) < 5.0 * wakes
    assert rows[("sds011", "work")] == pytest.approx(rows[("cpu", "light_sleep")], rel=0.05)
    assert rows[("radio", "sleep")] > rows[("cpu", "deep_sleep")]  # asleep through warm-ups as well


def test_a_counting_board_stays_awake_and_its_cpu_shows_it():
    r = run(_board("esp32-devkit-lora-e5"), days=0.01)
    rows = {(x.component, x.state): x.seconds for x in r.usage.rows}
    assert ("cpu", "deep_sleep") not in rows and ("cpu", "light_sleep") not in rows
    assert rows[("cpu", "idle")] == pytest.approx(r.days * 86400, rel=1e-6)  # never asleep: sleep_ms at 160 MHz


def test_the_scd41_is_woken_measured_twice_and_powered_down():
    b = _board("heltec-wifi-lora-32-v3")
    r = run(b, days=0.02, interval_s=300)
    rows = {(x.component, x.state): x.seconds for x in r.usage.rows}
    assert rows[("scd4x", "single_shot")] == pytest.approx(10.0 * r.wakes, rel=0.01)  # two 5 s shots a wake
    assert ("scd4x", "periodic") not in rows
    # powered up with Vext at every wake: its 1000 ms power-up time is waited as a warm-up, and its 30 ms wake-up
    # and two 5 s shots by the driver, all in light sleep (I2C drivers wait on the napping clock)
    assert rows[("cpu", "light_sleep")] == pytest.approx(11.03 * r.wakes, rel=0.01)
    assert rows[("scd4x", "power_down")] > 0  # powered down after each reading, before Vext goes off
    assert r.sleep_states["scd4x"][1] == "off"  # on the Heltec's Vext: unpowered in deep sleep


def test_budget_report_and_the_reverse_question():
    b = _board("heltec-wifi-lora-32-v3")
    rep = budget(b, interval_s=600, sensors=["bme280"], battery_mah=6800, days=0.5)
    assert rep["interval_s"] == 600 and rep["battery_mah"] == 6800
    assert sum(x["share"] for x in rep["rows"]) == pytest.approx(1.0, abs=1e-3)
    assert rep["battery_days"] == pytest.approx(rep["usable_mah"] / rep["mah_per_day"], rel=1e-3)
    assert {x["component"] for x in rep["rows"]} >= {"cpu", "board", "radio", "bme280"}
    life = shortest_interval(b, 365, sensors=["bme280"], battery_mah=6800, days=0.5)
    assert life["reached"] and life["battery_days"] >= 365
    faster = budget(b, interval_s=max(10, int(life["interval_s"] * 0.8)), sensors=["bme280"], battery_mah=6800,
                    days=0.5)
    assert faster["battery_days"] < 365 * 1.02  # the answer is (about) the shortest interval that does it
    with pytest.raises(BudgetError, match="cannot be reached"):
        shortest_interval(b, 100000, sensors=["bme280"], battery_mah=100, days=0.5)


def test_sensors_the_model_does_not_know_are_refused():
    with pytest.raises(BudgetError, match="not one the model knows"):
        with_sensors(_board("tbeam"), ["bme680"])


def test_the_cli_answers_with_json_and_plain_errors():
    exe = [str(Path(sys.executable).with_name("citynode"))]
    p = subprocess.run(exe + ["budget", "--board", "tbeam", "--json", "--battery", "3400"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["board"] == "tbeam" and rep["battery_days"] > 0 and rep["dominant"]["setting"]
    p = subprocess.run(exe + ["budget", "--board", "nope"], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "unknown board 'nope'" in p.stderr
    p = subprocess.run(exe + ["budget", "--board", "tbeam", "--interval", "5"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0 and "--interval must be 10..86400" in p.stderr

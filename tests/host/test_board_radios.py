"""Every board file's LoRa radio, built by the firmware (cnode.loraradio) with micropython-lib's unmodified
driver on the chip's register-level twin wired as the board file says: what reaches the antenna, the TCXO, the
image calibration. Each of these failed on a board before: RFO on PA_BOOST-only boards (near-zero range), the
Heltec V3's TCXO never enabled (the oscillator cannot start), no image calibration for 863-870 MHz."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from citynode.sim.hwsim import lora_lib as driver
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air
from cnode.loraradio import radio

BOARDS = Path(__file__).resolve().parents[2] / "boards"
LORA_BOARDS = sorted(p.stem for p in BOARDS.glob("*.json")
                     if json.loads(p.read_text())["radio"]["type"] in ("sx1276", "sx1262"))
EU868 = {"freq_khz": 868100, "sf": 9, "bw": "125", "coding_rate": 5, "preamble_len": 8, "syncword": 0x34,
         "output_power": 14, "crc_en": True, "invert_iq_tx": False, "invert_iq_rx": True}  # a MAC uplink set-up at 14 dBm


def _board(name: str) -> dict:
    return json.loads((BOARDS / f"{name}.json").read_text())


def _twin(r: dict, clock, air, **over):
    p = r["pins"]
    if r["type"] == "sx1276":
        from citynode.sim.hwsim.twin_sx127x import SX1276Twin

        kw = dict(reset=p["reset"], dio0=p["dio0"], dio1=p["dio1"], pa_pin=r["tx_ant"])
        kw.update(over)
        return SX1276Twin(clock, air, p["sck"], p["cs"], **kw)
    from citynode.sim.hwsim.twin_sx126x import SX1262Twin

    kw = dict(dio1=p["dio1"], reset=p["reset"], tcxo_mv=r.get("dio3_tcxo_millivolts"))
    kw.update(over)
    return SX1262Twin(clock, air, p["sck"], p["cs"], p["busy"], **kw)


@pytest.fixture
def bench(lora_lib):
    clock = VirtualClock()
    hw.use(clock)
    driver.load(clock, str(lora_lib))
    return clock, Air(clock)


def test_every_lora_board_is_checked():
    assert LORA_BOARDS == ["heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "tbeam", "ttgo-lora32-v2.1",
                           "virtual"]


@pytest.mark.mipindex
@pytest.mark.parametrize("name", LORA_BOARDS)
def test_the_configured_power_reaches_the_antenna(name, bench):
    clock, air = bench
    r = _board(name)["radio"]
    twin = _twin(r, clock, air)
    m = radio(r, hw)
    m.configure(EU868)
    m.send(b"\x40" + bytes(12))
    up = [t for t in air.log if not t.iq_inverted] if air.log else []
    assert len(air.log) == 1 and up, air.log
    assert up[0].power == 14  # dBm at the antenna, from the twin's PA registers
    assert (up[0].freq_khz, up[0].sf, up[0].bw_khz) == (868100, 9, 125)
    if r["type"] == "sx1276":
        assert r["tx_ant"] == "PA_BOOST"  # every SX1276 board we support wires only PA_BOOST to the antenna
        assert twin.image_cal_khz == 868100
    else:
        assert twin.image_cal_mhz == (860, 876)


@pytest.mark.mipindex
def test_an_sx1276_on_rfo_radiates_nothing_on_a_pa_boost_board(bench):
    clock, air = bench
    r = dict(_board("heltec-wifi-lora-32-v2")["radio"], tx_ant="RFO")  # what the firmware did before
    _twin(r, clock, air, pa_pin="PA_BOOST")
    m = radio(r, hw)
    m.configure(EU868)
    m.send(b"\x40" + bytes(12))
    assert [t.power for t in air.log] == [None]


@pytest.mark.mipindex
def test_heltec_v3_needs_its_tcxo(bench):
    clock, air = bench
    r = _board("heltec-wifi-lora-32-v3")["radio"]
    twin = _twin(r, clock, air)
    radio(r, hw).configure(EU868)
    assert twin.tcxo_enabled_mv == 1800
    hw.use(clock)
    driver.load(clock)
    no_tcxo = dict(r)
    no_tcxo.pop("dio3_tcxo_millivolts")  # the firmware before: the board file's key was never read
    _twin(r, clock, air)
    with pytest.raises(RuntimeError):
        m = radio(no_tcxo, hw)
        m.configure(EU868)
        m.send(b"\x40" + bytes(12))


@pytest.mark.mipindex
@pytest.mark.parametrize("name", LORA_BOARDS)
def test_before_deep_sleep_the_radio_sleeps_and_its_rails_are_off(name, lora_lib, tmp_path, monkeypatch):
    """Runner.power_down on every LoRa-chip board: the chip's twin in its sleep state (as the driver put it),
    Vext off where the board has it, the T-Beam's LoRa rail off."""
    from cnode.config import Keys
    from cnode.nvsfile import NVS

    from citynode.sim.hwsim import virtual_board

    monkeypatch.chdir(tmp_path)
    Keys(NVS("cn_keys")).set(bytes.fromhex("70b3d57ed00000ab"), bytes(8), bytes(range(16)))
    board = _board(name)
    clock = VirtualClock()
    hw.use(clock, board["chip"])
    driver.load(clock, str(lora_lib))  # micropython-lib's driver on the import path, as on the board
    r, vb = virtual_board.runner(board, clock, log=lambda m: None, root=".")
    vb_radio = vb.radio
    assert vb_radio.state() != "sleep" or name == "tbeam"  # set up by the driver: in standby
    r.power_down()
    vext = board.get("power", {}).get("vext")

    if board.get("power", {}).get("pmic"):
        assert not vb_radio.powered  # the rail is off: the chip draws nothing
    else:
        assert vb_radio.state() == "sleep"
    if vext:  # off, and held so through deep sleep
        assert hw.wire(vext["pin"]).level != vext["active"] and hw.wire(vext["pin"]).pins[-1].hold

"""End to end at the bench, for every board file: `citynode flash` writes the image to a simulated ESP32 ROM
loader and installs the app with micropython-lib's radio drivers (from the mip index, over HTTP on loopback),
`citynode provision` writes the keys, the node boots what was flashed with each chip of the board as a twin
(the SX1276 / SX1262 twins under the unmodified upstream driver), joins, and what `citynode decode` reads back
is what the twins measured."""
from __future__ import annotations

import pytest

from bringup import bring_up
from citynode.sim.hwsim.twin_bme280 import diurnal
from citynode.sim.hwsim.virtual_board import START_S, _pm

BOARDS = ("heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "ttgo-lora32-v2.1", "tbeam", "esp32-devkit-lora-e5",
          "virtual")
CONFIGURED_DBM = 12  # the MAC's default: TXPower 1 (14 dBm EIRP) less its 2 dBi antenna gain (cnode.lorawan.mac)


def _series(t_s: int) -> dict:
    return diurnal((t_s - START_S) * 1000)


@pytest.mark.mipindex
@pytest.mark.parametrize("name", BOARDS)
def test_flash_to_first_decoded_uplink(name, tmp_path, mip_url):
    r = bring_up(name, mip_url, tmp_path, uplinks=3)
    samples = r["samples"]
    assert samples and {s["device"] for s in samples} == {r["dev_eui"]}
    world = r["world"]
    ups = [x for x in world["air"] if not x["down"]]
    if world["radio"] in ("SX1276Twin", "SX1262Twin"):
        # what the chip radiated, from its registers: the configured power on the antenna, every uplink
        assert ups and all(x["power_dbm"] == CONFIGURED_DBM for x in ups), ups
        assert all(x["freq_khz"] in (868100, 868300, 868500) and x["bw_khz"] == 125 for x in ups)
        assert any(x["down"] for x in world["air"])  # the join-accept came down (and was heard: it joined)
        if world["radio"] == "SX1276Twin":
            assert world["image_cal_khz"] == 868100  # calibrated for the band in use, not the 434 MHz default
        else:
            assert world["tcxo_enabled_mv"] == 1800 and world["image_cal_mhz"] == [860, 876]
    for s in samples:
        v = s["values"]
        want = _series(s["t"] - 946684800) if "temperature" in v else None
        if want is not None:  # the BME280 / SHT4x twins' series at the sample's time (mean of a few reads)
            assert v["temperature"] == pytest.approx(want["temperature"], abs=0.3), s
            assert v["humidity"] == pytest.approx(want["humidity"], abs=2.0), s
        if "pressure" in v:
            assert v["pressure"] == pytest.approx(want["pressure"], abs=60), s
        if "pm2_5" in v:  # the PM twins' series over the sampling window (a minute either side)
            ms = (s["t"] - 946684800 - START_S) * 1000
            window = [_pm(ms + d)["pm2_5"] for d in range(-60000, 60001, 1000)]
            assert min(window) - 0.1 <= v["pm2_5"] <= max(window) + 0.1, s
        if "co2" in v:
            assert v["co2"] == pytest.approx(want["co2"] if want else _series(s["t"] - 946684800)["co2"], abs=30)

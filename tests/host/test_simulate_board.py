"""`citynode simulate --runtime micropython --board NAME`: every node's LoRa chip is the board's register-level
twin under micropython-lib's unmodified driver (installed from the mip index, as `citynode flash` does), in the
fleet's time and air. What it radiated is checked from the frames: the power at the antenna, and every frame by
an independent LoRaWAN implementation (npm lora-packet)."""
from __future__ import annotations

import json

import pytest

from citynode.cli import main
from citynode.payload.frame import decode_frame


def _simulate(tmp_path, capsys, *extra) -> tuple[dict, list[dict], str]:
    rc = main(["simulate", "--runtime", "micropython", "--nodes", "2", "--days", "0.1", "--seed", "5",
               "--frames", str(tmp_path / "f.jsonl"), "--report", str(tmp_path / "r.json"), *extra])
    err = capsys.readouterr().err
    assert rc == 0, err
    rep = json.loads((tmp_path / "r.json").read_text())
    frames = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    return rep, frames, err


@pytest.mark.mipindex
@pytest.mark.parametrize("board", ["heltec-wifi-lora-32-v3", "ttgo-lora32-v2.1"])
def test_a_fleet_of_a_board_runs_its_chip_under_the_upstream_driver(board, tmp_path, capsys, mip_url):
    from test_lorapacket import lora_packet

    rep, frames, _ = _simulate(tmp_path, capsys, "--board", board, "--mip-index", mip_url)
    t = rep["totals"]
    assert (t["board"], t["radio"]) == (board, "twin")
    assert t["samples_measured"] >= 2 * 28 and t["samples_delivered"] == t["samples_measured"]
    ups = [f for f in frames if f["dir"] == "up"]
    # the MAC's default TXPower (14 dBm EIRP, 2 dBi antenna): 12 dBm at the antenna port, from the chip's registers
    assert ups and all(f["power_dbm"] == 12 and f["board"] == board and f["radio"] == "twin" for f in ups)
    assert any(f["dir"] == "down" for f in frames)  # join-accepts heard through the twin's RX window
    todo = []
    for f in frames:
        mtype = int(f["phy"][:2], 16) >> 5
        if mtype == 0:
            todo.append({"kind": "joinreq", "phy": f["phy"], "appkey": f["app_key"]})
        elif mtype in (2, 4):
            todo.append({"kind": "data", "phy": f["phy"], "nwk": f["nwk_s_key"], "app": f["app_s_key"]})
    out = lora_packet(todo)
    assert out and all(r["mic"] is True for r in out)
    sent = {s.t for r in out if r.get("fport") == 2 for s in decode_frame(bytes.fromhex(r["payload"]))[0]}
    assert len(sent) >= 28


def test_without_the_drivers_simulate_says_so_and_runs_the_api_level_modem(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CITYNODE_CACHE", str(tmp_path / "cache"))  # nothing cached from other runs
    rep, frames, err = _simulate(tmp_path, capsys, "--board", "heltec-wifi-lora-32-v2", "--mip-index",
                                 str(tmp_path / "no-index"))
    assert "no radio driver" in err and "API-level modem" in err and "sx1276" in err
    assert rep["totals"]["radio"] == "api"
    assert rep["totals"]["samples_delivered"] == rep["totals"]["samples_measured"] > 0

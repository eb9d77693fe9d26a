"""A node that counts pedestrians by BLE, on the virtual board: the firmware as a board runs it (cnode.runner), the
ESP32's BLE through the bluetooth double, a street of advertisers around it (twin_mobility.BleStreet). What
reaches the network is a count per window, and no window with fewer than k devices is reported as a count."""
from __future__ import annotations

import json
from pathlib import Path

from citynode.sim.hwsim import bluetooth, virtual_board
from citynode.sim.hwsim.clock import VirtualClock
from citynode.payload.frame import decode_frame
from cnode.config import Keys
from cnode.nvsfile import NVS
from cnode.runner import sleep_deep

TBEAM = json.loads((Path(__file__).resolve().parents[2] / "boards" / "tbeam.json").read_text())
BLE = {"driver": "blecount", "bus": "ble", "every": 3, "capacity": 1024, "k_min": 5}


def _day(tmp_path, monkeypatch, entry):
    monkeypatch.chdir(tmp_path)  # the node's flash
    board = dict(TBEAM, radio={"type": "simulated"}, sensors=[{"driver": "bme280", "bus": "i2c", "address": "0x76"},
                                                                entry])
    Keys(NVS("cn_keys")).set(bytes.fromhex("70b3d57ed00e0e0e"), bytes(8), bytes(range(16)))
    clock = VirtualClock(start_s=virtual_board.START_S)
    logs: list[str] = []
    try:
        r, vb = virtual_board.runner(board, clock, log=logs.append, root=".")
        deep = sleep_deep(board, r)
        while clock.monotonic_ms() < 86400 * 1000:
            clock.sleep_ms(r.cycle())
    finally:
        bluetooth.uninstall()
    counts = [(s.values["pedestrians"], s.flags.get("pedestrians", [])) for port, data in vb.uplinks if port == 2
              for s in decode_frame(data)[0] if "pedestrians" in s.values]
    return deep, logs, counts, vb


def test_a_day_of_ble_counting_reports_counts_per_window_and_nothing_below_k(tmp_path, monkeypatch):
    deep, logs, counts, vb = _day(tmp_path, monkeypatch, BLE)
    assert deep is False and logs[0] == "no deep sleep: BleCounter counts in RAM between cycles"
    assert 90 <= len(counts) <= 97  # one reading per 15 min (every 3rd cycle of 300 s)
    for n, flags in counts:
        assert (n == 0 and flags == ["out_of_range"]) or (n >= 5 and flags == []), (n, flags)
    quiet = [n for n, f in counts if f]
    busy = [n for n, f in counts if not f]
    assert len(quiet) >= 10 and len(busy) >= 60  # the street's nights fall below k, its days do not
    assert max(busy) < vb.twins["blecount"].passed  # distinct devices per window, not a running total


def test_without_k_the_same_street_reports_its_quiet_windows_as_they_are(tmp_path, monkeypatch):
    _, _, counts, _ = _day(tmp_path, monkeypatch, dict(BLE, k_min=0))
    assert all(f == [] for _, f in counts)
    assert any(0 < n < 5 for n, _ in counts)  # what k = 5 keeps off the air


def test_the_t_beam_counts_pedestrians_by_ble_with_k_5(tmp_path, monkeypatch):
    from citynode.device.boards import get_board

    entry = next(s for s in get_board("tbeam").sensors if s["driver"] == "blecount")
    assert entry["bus"] == "ble" and entry["k_min"] >= 5
    deep, _, counts, _ = _day(tmp_path, monkeypatch, entry)
    assert deep is False and counts and all(n >= 5 or f == ["out_of_range"] for n, f in counts)

"""How the runner sleeps between cycles: deep sleep by default, light sleep while a sensor counts in RAM."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from citynode.sim.hwsim import virtual_board
from citynode.sim.hwsim.clock import VirtualClock
from cnode.runner import sleep_deep

BOARD = json.loads((Path(__file__).resolve().parents[2] / "boards" / "virtual.json").read_text())
BOARD["radio"] = {"type": "simulated"}  # the API-level modem: these tests are about the runner, not the radio
BOARD.pop("settings")


def _runner(tmp_path, monkeypatch, board):
    monkeypatch.chdir(tmp_path)  # the node's flash (settings, NVS stand-in)
    clock = VirtualClock(start_s=820540800)
    logs: list[str] = []
    return virtual_board.runner(board, clock, log=logs.append, root=".")[0], logs


def test_deep_sleep_unless_the_board_file_says_otherwise(tmp_path, monkeypatch):
    r, logs = _runner(tmp_path, monkeypatch, BOARD)
    assert sleep_deep(BOARD, r) is True
    off = copy.deepcopy(BOARD)
    off["settings"] = {"deep_sleep": False}
    assert sleep_deep(off, r) is False
    assert sleep_deep(BOARD, r, deep_sleep=False) is False
    assert logs == []


def test_a_pulse_counter_keeps_the_node_out_of_deep_sleep(tmp_path, monkeypatch):
    # its counts live in RAM between two cycles: deep sleep would drop them all without a word
    board = copy.deepcopy(BOARD)
    board["sensors"].append({"driver": "pir", "pin": 27, "channel": "pedestrians"})
    r, logs = _runner(tmp_path, monkeypatch, board)
    assert any(type(s.driver).__name__ == "PulseCounter" for s in r.sampler.slots)
    assert sleep_deep(board, r) is False
    assert logs == ["no deep sleep: PulseCounter counts in RAM between cycles"]
    assert sleep_deep(board, r, deep_sleep=False) is False

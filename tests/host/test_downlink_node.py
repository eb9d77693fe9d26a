"""Downlink commands end to end over LoRaWAN: the network queues a CBOR command, the node's runner applies it
from the MAC's RX window, answers with a status frame on port 3, refuses a replay or a counter too far ahead, resynchronises, re-joins,
and survives garbage."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from citynode.payload import downlink as commands
from citynode.sim.hwsim import machine as hw
from citynode.sim.hwsim import virtual_board
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_uart_pm import SDS011Twin
from cnode.config import Keys
from cnode.nvsfile import NVS

BOARD = json.loads((Path(__file__).resolve().parents[2] / "boards" / "virtual.json").read_text())
BOARD["radio"] = {"type": "simulated"}  # the API-level modem: these tests are about the runner, not the radio
BOARD.pop("settings")
DEV = bytes.fromhex("70b3d57ed00000aa")


@pytest.fixture
def node(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the node's flash: nvs.json and the queue live here
    Keys(NVS("cn_keys")).set(DEV, bytes(8), bytes(range(16)))
    clock = VirtualClock(start_s=820540800)
    hw.use(clock)
    r, vb = virtual_board.runner(BOARD, clock, log=lambda m: None, root=".")
    for s in r.sampler.slots:
        if type(s.driver).__name__ == "SDS011":
            s.driver.uart.attach(SDS011Twin(clock, lambda ms: {"pm2_5": 5.0 + ms // 300000 % 3, "pm10": 9.0}))
    ns = vb.ns

    def run(cycles):
        for _ in range(cycles):
            clock.sleep_ms(r.cycle())

    return r, ns, run


def _status_frames(ns):
    dev = ns.devices[DEV]
    return [commands.decode_status(u.data) for u in dev.uplinks if u.port == 3]


def test_set_interval_by_downlink_is_applied_answered_and_replay_refused(node):
    r, ns, run = node
    run(13)  # joined, first hourly uplink sent
    assert r.node.interval_s == 300
    ns.queue_downlink(DEV, 3, commands.encode("set_interval", 600, counter=1))
    run(13)  # the next uplink carries the downlink back in RX1
    assert r.node.interval_s == 600 and r.cfg.source("interval") == "downlink"
    st = _status_frames(ns)
    assert st and st[-1]["result"] == "ok" and st[-1]["command"] == "set_interval" and st[-1]["counter"] == 1
    n = len(st)
    ns.queue_downlink(DEV, 3, commands.encode("set_interval", 900, counter=1))  # replayed counter
    run(8)
    st = _status_frames(ns)
    assert r.node.interval_s == 600 and len(st) == n + 1
    assert st[-1]["result"] == "replay" and st[-1]["node_counter"] == 1 and 0 < st[-1]["challenge"] < 2**32


def test_a_node_locked_out_by_a_huge_counter_is_managed_again_after_a_resync(node):
    r, ns, run = node
    run(13)
    # what older firmware accepted: a counter of 2^32-1; this one refuses the jump, so fake the old state
    ns.queue_downlink(DEV, 3, commands.encode("set_adr", False, counter=0xFFFFFFFF))
    run(13)
    st = _status_frames(ns)[-1]
    assert st["result"] == "counter_too_far" and st["node_counter"] == 0 and r.cfg["adr"] is True
    r.dl.nvs.set_i32("cmd_ctr", -1)  # the lock-out as older firmware left it
    r.dl.nvs.commit()
    r.dl.counter = 0xFFFFFFFF
    ns.queue_downlink(DEV, 3, commands.encode("status", counter=1))
    run(13)
    st = _status_frames(ns)[-1]
    assert st["result"] == "replay" and st["node_counter"] == 0xFFFFFFFF
    ns.queue_downlink(DEV, 3, commands.encode("resync", st["challenge"], counter=0))
    run(13)
    assert _status_frames(ns)[-1] == {"counter": 0, "command": "resync", "result": "ok"}
    ns.queue_downlink(DEV, 3, commands.encode("set_interval", 900, counter=1))
    run(13)
    assert _status_frames(ns)[-1]["result"] == "ok" and r.node.interval_s == 900


def test_rejoin_by_downlink_gives_the_node_a_new_session(node):
    r, ns, run = node
    run(13)
    dev = ns.devices[DEV]
    joins, old_key, n_up = dev.joins, dev.app_skey, len(dev.uplinks)
    ns.queue_downlink(DEV, 3, commands.encode("rejoin", counter=1))
    run(26)
    assert {"counter": 1, "command": "rejoin", "result": "ok"} in _status_frames(ns)
    assert dev.joins == joins + 1 and dev.app_skey != old_key  # new session keys from a new join
    assert [u for u in dev.uplinks[n_up:] if u.port == 2]  # and data flows in the new session
    assert r.link.joined


def test_disable_channel_by_downlink_removes_it_from_the_frames(node):
    r, ns, run = node
    run(13)
    ns.queue_downlink(DEV, 3, commands.encode("disable_channel", "pm10", counter=5))
    run(26)
    dev = ns.devices[DEV]
    from citynode.payload.frame import decode_frame

    last = [u for u in dev.uplinks if u.port == 2][-1]
    samples, _ = decode_frame(last.data)
    assert all("pm10" not in s.values for s in samples) and any("pm2_5" in s.values for s in samples)


@pytest.mark.parametrize("payload,result", [(b"\xff\xff", "malformed"), (bytes.fromhex("a1006161"), "bad_format"),
                                            (bytes.fromhex("a20007011863"), "unknown_command")])
def test_bad_commands_get_an_error_status_and_the_node_goes_on(node, payload, result):
    r, ns, run = node
    run(13)
    ns.queue_downlink(DEV, 3, payload)
    run(13)
    st = _status_frames(ns)
    assert st and st[-1]["result"] == result
    before = len([u for u in ns.devices[DEV].uplinks if u.port == 2])
    run(13)
    assert len([u for u in ns.devices[DEV].uplinks if u.port == 2]) > before

"""`citynode command`: counters taken from the registry, status answers recorded into it, and a node locked out
by a counter at 2^32-1 brought back with a resync, all against the node's own command handler."""
from __future__ import annotations

import base64
import json

import pytest

from citynode.cli import main
from citynode.payload.downlink import decode_status
from citynode.sim.hwsim import nvs as nvsim
from citynode.device.registry import Registry
from cnode import downlink as node
from cnode.config import Config


@pytest.fixture
def fleet(tmp_path):
    path = tmp_path / "fleet.db"
    with Registry(path) as reg:
        dev = reg.create(1)[0]
    return str(path), dev.dev_eui


def _node(counter=0):
    nvsim.wipe()
    nvs = nvsim.NVS("cn_set")
    nvs.set_i32("cmd_ctr", counter if counter < 0x80000000 else counter - 0x100000000)
    nvs.commit()
    words = iter([0x0BADCAFE, 0x00C0FFEE])
    return node.Downlink(Config(None, None, nvs), nvs, None,
                         lambda n: next(words).to_bytes(4, "big"))


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out.strip(), err


def _say(dl, frame_hex: str) -> str:
    dl.handle(bytes.fromhex(frame_hex))
    return bytes(dl.status[:dl.status_len]).hex()


def test_each_command_gets_the_next_counter_and_the_node_takes_it(fleet, capsys):
    reg, dev = fleet
    dl = _node()
    rc, out, err = _cli(capsys, "command", dev, "set_interval", "600", "--registry", reg)
    assert rc == 0 and out == "a30001010102190258" and "counter 1" in err
    assert decode_status(bytes.fromhex(_say(dl, out)))["result"] == "ok"
    rc, out, _ = _cli(capsys, "command", dev, "disable_channel", "co2", "--registry", reg)
    assert out == "a3000201030206"
    rc, out, _ = _cli(capsys, "command", dev, "set_adr", "false", "--registry", reg, "--format", "tts-json")
    push = json.loads(out)["downlinks"][0]
    assert push["f_port"] == 3 and base64.b64decode(push["frm_payload"]).hex() == "a30003010502f4"
    rc, out, _ = _cli(capsys, "command", dev, "status", "--registry", reg, "--format", "chirpstack-json")
    assert json.loads(out) == {"devEui": dev.lower(), "confirmed": False, "fPort": 3,
                               "data": base64.b64encode(bytes.fromhex("a200040106")).decode()}
    with Registry(reg) as r:
        assert r.command_counter(dev) == {"sent": 4, "node": None, "challenge": None}


def test_a_refusal_recorded_puts_the_next_counter_above_the_node(fleet, capsys):
    reg, dev = fleet
    dl = _node(counter=41)  # the node took commands from another tool: the registry does not know
    _, out, _ = _cli(capsys, "command", dev, "status", "--registry", reg)
    st = _say(dl, out)
    rc, shown, err = _cli(capsys, "command", dev, "--status", st, "--registry", reg)
    assert rc == 0 and json.loads(shown)["result"] == "replay" and "next command gets 42" in err
    _, out, _ = _cli(capsys, "command", dev, "status", "--registry", reg)
    assert decode_status(bytes.fromhex(_say(dl, out)))["result"] == "ok" and dl.counter == 42


def test_a_locked_out_node_is_resynchronised_once(fleet, capsys):
    reg, dev = fleet
    dl = _node(counter=0xFFFFFFFF)  # what one command with counter 2^32-1 did to older firmware
    rc, _, err = _cli(capsys, "command", dev, "resync", "--registry", reg)
    assert rc == 1 and "no challenge from" in err  # nothing refused yet: no challenge known
    _, out, _ = _cli(capsys, "command", dev, "status", "--registry", reg)
    st = base64.b64encode(bytes.fromhex(_say(dl, out))).decode()  # base64 as a network server shows it
    rc, shown, err = _cli(capsys, "command", dev, "--status", st, "--registry", reg)
    assert json.loads(shown)["challenge"] == 0x0BADCAFE and "or resync it" in err
    rc, _, err = _cli(capsys, "command", dev, "status", "--registry", reg)
    assert rc == 1 and "used up" in err
    rc, resync, _ = _cli(capsys, "command", dev, "resync", "--registry", reg)
    assert rc == 0 and resync == "a30000010802" "1a0badcafe"
    st = _say(dl, resync)
    assert decode_status(bytes.fromhex(st)) == {"counter": 0, "command": "resync", "result": "ok"}
    _cli(capsys, "command", dev, "--status", st, "--registry", reg)
    _, out, _ = _cli(capsys, "command", dev, "set_dr", "2", "--registry", reg)
    assert out == "a3000101040202" and decode_status(bytes.fromhex(_say(dl, out)))["result"] == "ok"
    assert _say(dl, resync).endswith("0e1a00c0ffee")  # the resync replayed: refused, a new challenge


@pytest.mark.parametrize("argv,msg", [
    (["reset"], "unknown command 'reset'"),
    (["set_interval", "5"], "set_interval takes an integer 10..86400"),
    (["set_interval", "ten"], "set_interval takes an integer, not 'ten'"),
    (["set_adr", "1"], "set_adr takes true or false"),
    (["disable_channel", "smell"], "no channel 'smell'"),
    (["resync", "5"], "resync takes no argument here"),
    (["--status", "zz!"], "neither hex nor base64"),
    (["--status", "ff"], "is not a status frame"),
    ([], "give a COMMAND to build, or --status"),
])
def test_bad_input_is_a_usage_error_and_takes_no_counter(fleet, capsys, argv, msg):
    reg, dev = fleet
    rc, _, err = _cli(capsys, "command", dev, *argv, "--registry", reg)
    assert rc == 2 and msg in err and "Traceback" not in err
    with Registry(reg) as r:
        assert r.command_counter(dev)["sent"] == 0


def test_an_unknown_device_is_named(fleet, capsys):
    reg, _ = fleet
    rc, _, err = _cli(capsys, "command", "70B3D57ED0FFFFFF", "status", "--registry", reg)
    assert rc == 1 and "DevEUI 70B3D57ED0FFFFFF is not in registry" in err

"""Host-built downlink commands: exact bytes, decoded by the node's own decoder and handler, and by the JS codec."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cbor2
import pytest

from citynode.payload import downlink as commands
from citynode.payload.downlink import COMMANDS, FPORT, CommandError, decode_command, decode_status, encode
from citynode.sim.hwsim import nvs as nvsim
from cnode import downlink as node
from cnode.config import Config

ROOT = Path(__file__).resolve().parents[2]
NODE = "/usr/bin/node"

# (command, args, counter, CBOR bytes worked out by hand from RFC 8949 section 3)
EXACT = [
    ("set_interval", 600, 7, "a3 00 07 01 01 02 19 02 58"),
    ("set_interval", 10, 1, "a3 00 01 01 01 02 0a"),
    ("status", None, 1, "a2 00 01 01 06"),
    ("reboot", None, 70000, "a2 00 1a 00 01 11 70 01 07"),
    ("disable_channel", "co2", 300, "a3 00 19 01 2c 01 03 02 06"),
    ("enable_channel", 16, 24, "a3 00 18 18 01 02 02 10"),
    ("set_adr", False, 2, "a3 00 02 01 05 02 f4"),
    ("set_adr", True, 3, "a3 00 03 01 05 02 f5"),
    ("set_dr", 5, 4294967295, "a3 00 1a ff ff ff ff 01 04 02 05"),
    ("rejoin", None, 8, "a2 00 08 01 09"),
    ("resync", 0x12345678, 0, "a3 00 00 01 08 02 1a 12 34 56 78"),
]


def test_exact_bytes():
    for cmd, args, ctr, want in EXACT:
        assert encode(cmd, args, counter=ctr).hex() == want.replace(" ", ""), cmd


def test_node_decoder_agrees_with_cbor2():
    for cmd, args, ctr, _ in EXACT:
        frame = encode(cmd, args, counter=ctr)
        assert node.decode(frame) == cbor2.loads(frame)
        d = decode_command(frame)
        assert d["command"] == cmd and d["counter"] == ctr
    # structures cbor2 writes that the node decoder supports
    for v in [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -24, -25, -2**64,
              b"", b"\x00" * 30, "", "citynode", "ü€𝄞", [], [1, [2, [3]]], {}, {0: 1, "k": [True, False, None]}]:
        assert node.decode(cbor2.dumps(v)) == v, v


def test_node_executes_host_commands():
    nvsim.wipe()
    nvs = nvsim.NVS("cn_set")
    cfg = Config(None, None, nvs)
    dl = node.Downlink(cfg, nvs, lambda: {node.S_QUEUE_DEPTH: 12, node.S_DROPPED: 1})
    assert dl.handle(encode("set_interval", 900, counter=1)) == node.ACT_SEND
    assert dl.handle(encode("disable_channel", "pm2_5", counter=2)) == node.ACT_SEND
    assert dl.handle(encode("set_adr", False, counter=3)) == node.ACT_SEND
    assert dl.handle(encode("set_dr", 1, counter=4)) == node.ACT_SEND
    assert (cfg["interval"], cfg["channels_off"], cfg["adr"], cfg["dr"]) == (900, 1 << 4, False, 1)
    assert dl.handle(encode("status", counter=5)) == node.ACT_SEND
    status = bytes(dl.status[:dl.status_len])
    assert decode_status(status) == {"counter": 5, "command": "status", "result": "ok", "interval": 900, "dr": 1,
                                     "adr": False, "channels_off": ["pm2_5"], "queue_depth": 12, "dropped": 1}
    assert dl.handle(encode("reboot", counter=6)) == node.ACT_REBOOT
    assert dl.handle(encode("set_dr", 2, counter=6)) == node.ACT_SEND  # replay: refused, with where it stands
    assert cfg["dr"] == 1
    st = decode_status(bytes(dl.status[:dl.status_len]))
    assert st == {"counter": 6, "command": "set_dr", "result": "replay", "node_counter": 6}  # (no random source)
    dl.handle(b"\xff")
    assert decode_status(bytes(dl.status[:dl.status_len])) == {"counter": 0, "command": 0, "result": "malformed"}


def test_host_rejects_what_the_node_would():
    with pytest.raises(CommandError, match="unknown command 'reset'"):
        encode("reset", counter=1)
    with pytest.raises(CommandError, match="set_interval takes an integer 10..86400"):
        encode("set_interval", 5, counter=1)
    with pytest.raises(CommandError, match="set_dr takes an integer 0..5"):
        encode("set_dr", 6, counter=1)
    with pytest.raises(CommandError, match="set_adr takes true or false"):
        encode("set_adr", 1, counter=1)
    with pytest.raises(CommandError, match="no channel 'smell'"):
        encode("disable_channel", "smell", counter=1)
    with pytest.raises(CommandError, match="status takes no argument"):
        encode("status", 1, counter=1)
    for bad in (0, -1, 2**32, True):
        with pytest.raises(CommandError, match="counter"):
            encode("status", counter=bad)
    for bad in (None, 0, 2**32, True):
        with pytest.raises(CommandError, match="resync takes the node's challenge"):
            encode("resync", bad, counter=0)
    with pytest.raises(CommandError, match="resync: the new counter"):
        encode("resync", 5, counter=-1)
    assert encode(COMMANDS["set_dr"], 2, counter=9) == encode("set_dr", 2, counter=9)
    with pytest.raises(CommandError, match="unknown command id 99"):
        encode(99, counter=1)


def test_tables_for_the_codec():
    assert FPORT == 3
    assert COMMANDS == {"set_interval": 1, "enable_channel": 2, "disable_channel": 3, "set_dr": 4,
                        "set_adr": 5, "status": 6, "reboot": 7, "resync": 8, "rejoin": 9}
    assert set(commands.RESULTS.values()) == {"ok", "malformed", "bad_format", "unknown_command",
                                             "bad_argument", "replay", "counter_too_far", "wrong_challenge",
                                             "unsupported"}


def test_generated_js_codec_builds_the_same_bytes(tmp_path):
    from citynode.payload.codec import generate

    path = tmp_path / "citynode.js"
    path.write_text(generate("ttn"))
    runner = ROOT / "tests" / "js" / "codec_runner.js"
    inputs = []
    for cmd, args, ctr, _ in EXACT:
        data = {"command": cmd, "counter": ctr}
        if args is not None:
            data["args"] = args if not isinstance(args, str) else 6  # the JS codec takes channel ids
        inputs.append({"fn": "encodeDownlink", "input": {"data": data}})
    proc = subprocess.run([NODE, str(runner), "ttn", str(path)], input="".join(json.dumps(i) + "\n" for i in inputs),
                          capture_output=True, text=True, timeout=60, check=True)
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(got) == len(EXACT)
    for (cmd, args, ctr, want), g in zip(EXACT, got):
        assert g["fPort"] == FPORT
        assert bytes(g["bytes"]).hex() == want.replace(" ", ""), cmd

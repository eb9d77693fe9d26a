"""End to end at the bench: `citynode flash` writes the image to a simulated ESP32 ROM loader and installs the
real firmware on a virtual node, `citynode provision` writes its keys, the node boots the flashed app, joins
the simulated network and sends uplinks that `citynode decode` reads back."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

from citynode.cli import main
from citynode.hwsim.esp32rom import Esp32RomSim
from citynode.hwsim.vnode import HOST_DIR, VirtualNode, micropython_exe

TWINS = {"bme280": 0x76, "sds011": 1, "adc_uv": 1_950_000}  # 1.95 V at the pin of a 100k/100k divider


def test_flash_provision_boot_join_and_decode(tmp_path, capsys):
    fw = tmp_path / "micropython.bin"
    fw.write_bytes(b"\x00" + random.Random(3).randbytes(60_000))
    reg = tmp_path / "registry.db"
    with Esp32RomSim() as sim, VirtualNode(twins=TWINS) as node:
        rc = main(["flash", "--board", "virtual", "--port", sim.url, "--repl-port", node.port,
                   "--firmware", str(fw), "--no-reset", "--connect-attempts", "1"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert "verified" in out.out
        assert bytes(sim.flash[0x1000:0x1000 + len(fw.read_bytes())]) == fw.read_bytes()
        rc = main(["provision", "--registry", str(reg), "--board", "virtual", "--port", node.port])
        out = capsys.readouterr()
        assert rc == 0, out.err
        dev_eui = out.out.split()[0].lower()
        keys = sqlite3.connect(reg).execute("select app_key from devices").fetchall()
        assert len(keys) == 1
        app_key_hex = keys[0][0] if isinstance(keys[0][0], str) else keys[0][0].hex()
        assert app_key_hex.lower() not in (out.out + out.err).lower()
        # the node boots what was flashed (main.py guards app_main.py) on the simulated board
        env = dict(os.environ, MICROPYPATH=os.pathsep.join((".", str(node.fs / "lib"), str(node._sys), str(HOST_DIR))))
        boot = subprocess.run([micropython_exe(), "-X", "heapsize=4M", "main.py"], cwd=node.fs, env=env,
                              capture_output=True, text=True, timeout=300)
    assert boot.returncode == 0, boot.stdout[-2000:] + boot.stderr[-2000:]
    assert "joined" in boot.stdout
    lines = [x for x in boot.stdout.splitlines() if x.startswith("{")]
    assert lines, boot.stdout[-2000:]
    dec = subprocess.run([str(Path(sys.executable).with_name("citynode")), "decode"], input="\n".join(lines) + "\n",
                         capture_output=True, text=True)
    assert dec.returncode == 0, dec.stderr
    samples = [json.loads(x) for x in dec.stdout.splitlines()]
    assert len(samples) >= 30 - 12  # everything older than the longest wait (max_latency_s, 1 h)
    assert {s["device"] for s in samples} == {dev_eui}
    v = samples[1]["values"]
    assert 6.0 <= v["pm2_5"] <= 12.0 and 11.0 <= v["pm10"] <= 19.0  # the simulated board's SDS011 series
    assert 0 < v["temperature"] < 40
    bat = [s["values"]["battery"] for s in samples if "battery" in s["values"]]
    assert bat and all(3.85 <= b <= 3.95 for b in bat)  # read every 12th cycle

"""The firmware's own runner on the simulated board, under the MicroPython unix port: it boots from a board
file and provisioned keys, joins the in-process network, and what it sends decodes with `citynode decode`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from citynode.sim.runtime import FIRMWARE_DIR, HOST_DIR, micropython_exe

BOARD = {"name": "virtual", "chip": "esp32", "flash_offset": "0x1000", "simulated": {"cycles": 30},
         "radio": {"type": "simulated"}, "i2c": {"id": 0, "scl": 22, "sda": 21},
         "uarts": [{"id": 1, "tx": 17, "rx": 16, "baud": 9600}],
         "sensors": [{"driver": "bme280", "bus": "i2c", "address": "0x76"},
                     {"driver": "sds011", "bus": "uart", "uart": 1}],
         "battery": {"adc": 35, "r1": 100000, "r2": 100000}}
DEV_EUI = "70b3d57ed0000099"
RUN = "import json\nfrom citynode.sim.hwsim import virtual_board\nvirtual_board.run(json.load(open('board.json')))\n"


def _mp(folder, code):
    return subprocess.run([micropython_exe(), "-X", "heapsize=4M", "-c", code], cwd=folder, capture_output=True,
                          text=True, timeout=300, env={"MICROPYPATH": f"{FIRMWARE_DIR}:{HOST_DIR}"})


def test_runner_joins_and_its_uplinks_decode(tmp_path):
    (tmp_path / "board.json").write_text(json.dumps(BOARD))
    keys = ("from cnode.config import Keys\nfrom cnode.nvsfile import NVS\n"
            f"Keys(NVS('cn_keys')).set(bytes.fromhex('{DEV_EUI}'), bytes(8), bytes(range(16)))\n")
    assert _mp(tmp_path, keys).returncode == 0
    proc = _mp(tmp_path, RUN)
    assert proc.returncode == 0, proc.stderr
    assert "joined" in proc.stdout and "virtual node: 30 cycles done" in proc.stdout
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    assert lines
    dec = subprocess.run([str(Path(sys.executable).with_name("citynode")), "decode"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    assert dec.returncode == 0, dec.stderr
    samples = [json.loads(x) for x in dec.stdout.splitlines()]
    assert len(samples) >= 30 - 12  # 30 cycles: everything older than the longest wait (max_latency_s, 1 h)
    assert all(s["device"] == DEV_EUI for s in samples)
    first = samples[0]["values"]
    assert {"temperature", "humidity", "pressure", "pm2_5", "pm10", "battery"} <= set(first)
    assert first["reboot_reason"] == 1 and first["fw_version"] == 10000
    assert 3.85 <= first["battery"] <= 3.95
    ts = [s["t"] for s in samples]
    assert ts == sorted(ts) and all(b - a == 300 for a, b in zip(ts, ts[1:]))
    assert (tmp_path / "q").is_dir()  # the queue lives in the node's own folder


def test_unprovisioned_node_says_so_and_sends_nothing(tmp_path):
    (tmp_path / "board.json").write_text(json.dumps(dict(BOARD, simulated={"cycles": 2})))
    proc = _mp(tmp_path, RUN)
    assert proc.returncode == 0, proc.stderr
    assert "not provisioned" in proc.stdout
    assert not [x for x in proc.stdout.splitlines() if x.startswith("{")]


def test_a_boot_that_fails_records_a_crash_and_reboots_never_the_repl():
    """main.py on the pty node with no board file: the firmware records the crash, deep-sleeps (a reboot
    here), and the next boot counts a boot loop and shows the last crash on the console."""
    import shutil
    import time

    from citynode.sim.hwsim.vnode import VirtualNode

    with VirtualNode() as node:
        shutil.copytree(FIRMWARE_DIR / "cnode", node.fs / "cnode")
        shutil.copy(FIRMWARE_DIR / "main.py", node.fs / "main.py")
        node._proc.kill()  # the supervisor starts it again (power stays on: a reset), now with main.py
        log = node.fs / "crash.log"
        deadline = time.time() + 60
        while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
            time.sleep(0.2)
        lines = log.read_text().splitlines()
        assert len(lines) >= 2 and all("OSError" in x for x in lines), lines  # no board file: ENOENT
        assert "cause=4" in lines[-1]  # the second boot came from the deep sleep, not a power-on

"""A board from `citynode flash` to its first decoded uplink, as a technician would do it, on simulated parts:
the ESP32 ROM loader (esptool writes the image), the virtual node on a pty (mpremote installs the app and the
radio drivers from a mip index, then the self-test), `citynode provision`, a boot of what was flashed with
every chip of the board file as a twin, and `citynode decode`. Shared by tests/host/test_e2e_bench.py and
bench/bringup_bench.py."""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from citynode.device.boards import get_board
from citynode.cli import main
from citynode.sim.hwsim.esp32rom import Esp32RomSim
from citynode.sim.hwsim.vnode import HOST_DIR, VirtualNode, micropython_exe

CHIP_ID = {"esp32": 0, "esp32s3": 9}  # the ESP image header's chip id (byte 12)
SIZES = {"4MB": 4 << 20, "8MB": 8 << 20, "16MB": 16 << 20}


def fake_image(chip: str, n: int = 60_000) -> bytes:
    """An ESP app image header for the board's chip (magic 0xE9, chip id at byte 12) and random contents."""
    head = bytearray(24)
    head[0] = 0xE9
    head[12] = CHIP_ID[chip]
    return bytes(head) + random.Random(3).randbytes(n - 24)


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue()


def bring_up(name: str, mip_index: str, tmp: Path, uplinks: int = 3, timeout: float = 300) -> dict:
    """Flash, provision, boot and decode one board; returns timings, the self-test, the decoded samples and
    what the twins saw (WORLD line). Raises AssertionError with the tool's own words when a step fails."""
    board = get_board(name)
    fw = tmp / f"{name}.bin"
    fw.write_bytes(fake_image(board.chip))
    reg = tmp / f"{name}.db"
    res: dict = {"board": name}
    t0 = time.perf_counter()
    with Esp32RomSim(chip=board.chip, flash_size=SIZES[board.flash_size]) as sim, \
            VirtualNode(board=board.node_config()) as node:
        rc, out, err = _cli(["flash", "--board", name, "--port", sim.url, "--repl-port", node.port,
                             "--firmware", str(fw), "--no-reset", "--connect-attempts", "1", "--mip-index", mip_index])
        assert rc == 0, f"flash {name}: {err.strip()[-600:]}"
        res["flash_s"] = time.perf_counter() - t0
        res["flash_out"] = out
        rc, out, err = _cli(["provision", "--registry", str(reg), "--board", name, "--port", node.port])
        assert rc == 0, f"provision {name}: {err.strip()[-600:]}"
        dev_eui = out.split()[0].lower()
        key = sqlite3.connect(reg).execute("select app_key from devices").fetchone()[0]
        app_key = key if isinstance(key, str) else key.hex()
        res["dev_eui"] = dev_eui
        res["provisioned_s"] = time.perf_counter() - t0
        node.use_keys(dev_eui, app_key.lower(), stop_after=uplinks)
        if board.radio.get("type") in ("lora-e5", "rak3172"):
            # known gap (issue 11): the AT-modem link has no time service yet (RAK3172 AT+TIMEREQ, the E5's
            # equivalent), so on these boards the clock starts set, as if a GPS or NTP had set it
            from citynode.sim.hwsim.virtual_board import START_S

            node.hw["start_s"] = START_S
            node._write_hw()
        cfg_path = node.fs / "board.json"  # the technician's setting: this pty node does not model deep sleep
        cfg = json.loads(cfg_path.read_text())
        cfg.setdefault("settings", {})["deep_sleep"] = False
        cfg_path.write_text(json.dumps(cfg))
        env = dict(os.environ, MICROPYPATH=os.pathsep.join((".", str(node.fs / "lib"), str(node._sys), str(HOST_DIR))))
        boot = subprocess.Popen([micropython_exe(), "-X", "heapsize=4M", "main.py"], cwd=node.fs, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines, log = [], []
        q: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [q.put(x) for x in iter(boot.stdout.readline, "")] + [q.put("")],
                         daemon=True).start()
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    line = q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if not line:
                    break
                log.append(line.rstrip("\n"))
                if line.startswith("{"):
                    lines.append(line)
                    if len(lines) == 1:
                        res["first_uplink_s"] = time.perf_counter() - t0
                elif line.startswith("WORLD|"):
                    res["world"] = json.loads(line[6:])
                elif "stopped" in line:
                    break
        finally:
            boot.kill()
            boot.wait()
    res["log"] = log
    assert lines, f"{name}: no uplink decoded; the node said:\n" + "\n".join(log[:15] + ["..."] + log[-15:])
    dec = subprocess.run([str(Path(sys.executable).with_name("citynode")), "decode"], input="".join(lines),
                         capture_output=True, text=True)
    assert dec.returncode == 0, dec.stderr
    res["samples"] = [json.loads(x) for x in dec.stdout.splitlines()]
    res["uplink_lines"] = lines
    return res

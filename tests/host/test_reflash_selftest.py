"""A reflash of a node whose app has run, on the virtual node (the MicroPython unix port on a pty, every chip of the
board file a twin): `citynode flash` writes the image to the simulated ROM loader (real esptool); the chip then
resets, as esptool's hard reset does on a board, and boots the app that is on its filesystem, with NVS erased as the
image write leaves it; `citynode flash` stops that app with Ctrl-C, installs, and its self-test must pass, whatever
state the app left the sensors in. As on a board, a Ctrl-C reaches running code (the vnode relays it as SIGINT)."""
from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import time
from pathlib import Path

import pytest
import serial

from citynode.device import flash as flash_mod
from citynode.device.boards import get_board
from citynode.cli import main
from citynode.sim.hwsim.esp32rom import Esp32RomSim
from citynode.sim.hwsim.vnode import VirtualNode

from bringup import SIZES, fake_image

MIP_INDEX = Path(__file__).resolve().parents[3] / "shared" / "mip-index"

pytestmark = pytest.mark.mipindex  # LoRa boards: the install needs micropython-lib's drivers from the index


def _cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def _read_until(port: str, text: str, limit_s: float) -> str:
    buf = b""
    with serial.Serial(port, 115200, timeout=0.2) as s:
        end = time.monotonic() + limit_s
        while text.encode() not in buf and time.monotonic() < end:
            buf += s.read(4096)
    return buf.decode(errors="replace")


@pytest.fixture
def reflash_resets_the_node(monkeypatch):
    """After esptool wrote and verified the image, the chip resets and boots what is on its filesystem; NVS is
    erased by the image write (citynode.device.production). The simulated ROM loader is not the virtual node, so this
    does both to the node in `nodes` after each write_image."""
    nodes: list[VirtualNode] = []
    real = flash_mod.write_image

    def write_image(*a, **k):
        result = real(*a, **k)
        for node in (nodes if not k.get("no_reset") else ()):
            (node.fs / "nvs.json").unlink(missing_ok=True)
            assert node.reset(), "the node did not boot again"
        return result

    monkeypatch.setattr(flash_mod, "write_image", write_image)
    return nodes


def test_a_reflash_of_a_node_whose_app_has_run_passes_its_selftest(tmp_path, monkeypatch, reflash_resets_the_node):
    monkeypatch.setenv("CITYNODE_MIP_INDEX", str(MIP_INDEX))
    monkeypatch.setenv("CITYNODE_CACHE", str(tmp_path / "cache"))
    board = get_board("virtual")  # BME280 on I2C, SDS011 on UART 1
    fw = tmp_path / "fw.bin"
    fw.write_bytes(fake_image(board.chip))
    reg = tmp_path / "fleet.db"
    flash = ["flash", "--board", board.name, "--firmware", str(fw), "--connect-attempts", "1"]
    with Esp32RomSim(chip=board.chip, flash_size=SIZES[board.flash_size]) as sim, \
            VirtualNode(board=board.node_config()) as node:
        reflash_resets_the_node.append(node)
        rc, out, err = _cli(*flash, "--port", sim.url, "--repl-port", node.port, "--no-reset")  # stays at the REPL
        assert rc == 0, err
        rc, out, err = _cli("provision", "--registry", str(reg), "--board", board.name, "--port", node.port)
        assert rc == 0, err
        dev_eui = out.split()[0].lower()
        key = sqlite3.connect(reg).execute("select app_key from devices").fetchone()[0]
        node.use_keys(dev_eui, key if isinstance(key, str) else key.hex(), stop_after=3)
        assert node.reset()
        ran = _read_until(node.port, "uplinks at", 120)  # the app: joined, sampled, slept its sensors, sent
        assert "virtual node: 3 uplinks at" in ran, ran[-2000:]

        rc, out, err = _cli(*flash, "--port", sim.url, "--repl-port", node.port)  # the reflash
        marker = (node.fs / flash_mod.MARKER).exists()
    assert rc == 0, err + out
    assert not marker
    assert "sensors       ok      firmware self-test: 0 failed" in out, out
    table = out[out.index("sensor     channel"):]
    assert "BME280     temperature    " in table and " Cel\n" in table and "SDS011     pm10           " in table
    assert "FAILED" not in table


def test_the_virtual_node_takes_ctrl_c_in_running_code_and_not_at_the_repl_or_in_deep_sleep():
    """As the ESP32 port: Ctrl-C raises KeyboardInterrupt in a running program; at the REPL, and after
    micropython.kbd_intr(-1), it is a character like any other."""
    with VirtualNode() as node:
        (node.fs / "main.py").write_text("import time\nprint('app up')\nwhile True:\n    time.sleep_ms(50)\n")
        assert node.reset()
        with serial.Serial(node.port, 115200, timeout=0.2) as s:
            got = b""
            end = time.monotonic() + 10
            while b"app up" not in got and time.monotonic() < end:
                got += s.read(256)
            s.write(b"\r\x03")
            got = b""
            end = time.monotonic() + 10
            while b">>> " not in got and time.monotonic() < end:
                got += s.read(256)
            assert b"KeyboardInterrupt" in got and b">>> " in got, got
            boots = node.boots
            s.write(b"\x03")  # at the REPL: a character (a new prompt), not a signal that would end the process
            time.sleep(1)
            s.write(b"print(6 * 7)\r")
            got = b""
            end = time.monotonic() + 10
            while b"42" not in got and time.monotonic() < end:
                got += s.read(256)
            assert b"42" in got and node.boots == boots
        (node.fs / "main.py").write_text("import micropython, time\nmicropython.kbd_intr(-1)\nprint('closed')\n"
                                         "while True:\n    time.sleep_ms(50)\n")
        assert node.reset()
        with serial.Serial(node.port, 115200, timeout=0.2) as s:
            got = b""
            end = time.monotonic() + 10
            while b"closed" not in got and time.monotonic() < end:
                got += s.read(256)
            s.write(b"\r\x03")
            time.sleep(1.5)
            assert b"KeyboardInterrupt" not in s.read(4096)
        assert json.loads((node._sys / "vnode_hw.json").read_text()) is not None

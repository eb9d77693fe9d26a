"""Production mode from the host (docs/security.md): `citynode provision --production` on the virtual node (the
MicroPython unix port on a pty, running the real main.py and firmware), the one-line message `provision` and
`flash` give for a node whose REPL is closed, and NVS erased by every image `citynode flash` writes (esptool
against the simulated ROM loader)."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citynode.device import flash as flash_mod
from citynode.device import keys as node_keys
from citynode.device import production
from citynode.device.boards import get_board
from citynode.cli import main
from citynode.device.flash import FlashError, install_app, write_image
from citynode.sim.hwsim.esp32rom import Esp32RomSim
from citynode.sim.hwsim.vnode import VirtualNode
from citynode.device.registry import Registry
from citynode.sim.runtime import FIRMWARE_DIR

CITYNODE = str(Path(sys.executable).with_name("citynode"))
STOCK_BOOT_PY = ("# This file is executed on every boot (including wake-boot from deepsleep)\n#import esp\n"
                 "#esp.osdebug(None)\n#import webrepl\n#webrepl.start()\n")  # MicroPython's inisetup.py


def cli(*argv, timeout=120):
    return subprocess.run([CITYNODE, *argv], capture_output=True, text=True, timeout=timeout)


def _install(fs: Path, nvs: dict | None = None, boot_py: str | None = None) -> None:
    """What `citynode flash` leaves on a board, from this checkout: main.py (flash.MAIN_PY), app_main.py
    (firmware/main.py) and the cnode package (as source; a board gets .mpy)."""
    shutil.copytree(FIRMWARE_DIR / "cnode", fs / "cnode", dirs_exist_ok=True)
    shutil.copy(FIRMWARE_DIR / "main.py", fs / "app_main.py")
    (fs / "main.py").write_text(flash_mod.MAIN_PY)
    if nvs is not None:
        (fs / "nvs.json").write_text(json.dumps(nvs))
    if boot_py is not None:
        (fs / "boot.py").write_text(boot_py)


def _booted_in_production(node: VirtualNode) -> None:
    """Keys and production mode in NVS, the install in place; then a reset boots main.py."""
    _install(node.fs, {"cn_keys": {"dev_eui": ["b", "70b3d57ed0000042"], "join_eui": ["b", "00" * 8],
                                   "app_key": ["b", "11" * 16], "prod": ["i", 1]}})
    assert node._proc is not None
    node._proc.kill()  # the supervisor boots it again, now with main.py (power stays on: a reset)


def test_the_host_and_the_firmware_agree():
    assert production.MARK in (FIRMWARE_DIR / "main.py").read_text()
    code = [x.strip() for x in flash_mod.MAIN_PY.splitlines() if x.strip() and not x.startswith("#")]
    assert code[:2] == ["from micropython import kbd_intr", "kbd_intr(-1)"]  # what preflight checks
    assert node_keys.MARKER == flash_mod.MARKER
    assert node_keys.PROD_KEY in (FIRMWARE_DIR / "main.py").read_text()


def test_the_nodes_main_py_takes_a_ctrl_c_from_before_its_first_statement_and_starts_the_app_all_the_same(
        monkeypatch):
    """On the ESP32 a Ctrl-C is only made pending by the UART's interrupt; the VM raises it at its next jump
    (py/vm.c). The first jump of main.py is the loop under kbd_intr(-1), inside a try: a KeyboardInterrupt
    there (here: raised by that loop's range) must not end main.py (that would be the REPL) but go on to
    app_main, which decides what a production node does."""
    calls: list = []

    class _Mp:
        @staticmethod
        def kbd_intr(c):
            calls.append(("kbd_intr", c))

    class _Os:
        @staticmethod
        def stat(p):
            raise OSError(2, "ENOENT")

    def range_that_is_interrupted(n):
        calls.append(("jump",))
        raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "micropython", _Mp)
    monkeypatch.setitem(sys.modules, "os", _Os)
    monkeypatch.setitem(sys.modules, "app_main", type(sys)("app_main"))
    exec(flash_mod.MAIN_PY, {"__name__": "__main__", "range": range_that_is_interrupted,
                             "__builtins__": __builtins__})
    assert calls == [("kbd_intr", -1), ("jump",)]  # then app_main imported (from sys.modules), no exception


def _crash_log(node, text, wait_s=10.0):
    """The node's crash log once it holds `text` (the node writes it as it resets: on a loaded machine that can
    come after the host's command has given up), or what it holds after wait_s."""
    path = node.fs / "crash.log"
    end = time.monotonic() + wait_s
    while True:
        log = path.read_text() if path.exists() else ""
        if text in log or time.monotonic() > end:
            return log
        time.sleep(0.05)


def test_provision_and_flash_say_a_node_is_in_production_mode_instead_of_timing_out(tmp_path):
    reg = str(tmp_path / "r.db")
    board = get_board("virtual")
    with VirtualNode() as node:
        _booted_in_production(node)
        t0 = time.monotonic()
        r = cli("provision", "--registry", reg, "--port", node.port, "--timeout", "3")
        took = time.monotonic() - t0
        with pytest.raises(FlashError) as e:
            install_app(node.port, board, files=[], drivers=[])
        log = _crash_log(node, "ENOENT")
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"citynode provision: error: the node on {node.port} is in production mode: its REPL "
                               "is closed")
    assert "citynode flash --board BOARD" in r.stderr and "no MicroPython REPL" not in r.stderr
    assert took < 3 + production.LISTEN_S + 10
    assert str(e.value).startswith(f"the node on {node.port} is in production mode")
    with Registry(reg) as rr:
        assert rr.count() == 0  # nothing spent
    assert "OSError: [Errno 2] ENOENT" in log  # it ran its app (no board file here) and reset, never the REPL


def test_provision_production_writes_the_flag_resets_the_node_and_then_locks_out_the_next_provision(tmp_path):
    reg = str(tmp_path / "r.db")
    with VirtualNode() as node:  # the REPL: no main.py when it started (as after `citynode flash --no-reset`)
        _install(node.fs, boot_py=STOCK_BOOT_PY)
        r = cli("provision", "--registry", reg, "--board", "virtual", "--port", node.port, "--production")
        nvs = json.loads((node.fs / "nvs.json").read_text())
        boot_py = (node.fs / "boot.py").exists()
        again = cli("provision", "--registry", reg, "--port", node.port, "--timeout", "3")
    assert r.returncode == 0, r.stderr
    assert "production mode: the node restarted with its REPL closed" in r.stderr
    with Registry(reg) as rr:
        (dev,) = rr.devices()
    assert r.stdout.split() == [dev.dev_eui] and dev.status == "provisioned"
    assert nvs["cn_keys"]["prod"] == ["i", 1] and nvs["cn_keys"]["dev_eui"] == ["b", dev.dev_eui.lower()]
    assert not boot_py  # the stock boot.py (comments only) is gone: no Ctrl-C window while it runs
    assert again.returncode == 1 and "is in production mode" in again.stderr


def test_production_mode_is_refused_before_an_identity_is_spent_on_a_node_that_cannot_keep_its_repl_closed(tmp_path):
    from provision_vnode import VirtualNode as BareRepl

    reg = str(tmp_path / "r.db")
    with BareRepl(tmp_path / "bare") as node:  # a REPL and no citynode install at all
        r = cli("provision", "--registry", reg, "--port", node.port, "--production")
        nvs = node.nvs()
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "cannot go into production mode: it has no main.py of citynode flash" in r.stderr
    assert nvs == {}
    with VirtualNode() as node:
        _install(node.fs, boot_py="import webrepl\nwebrepl.start()\n")
        r2 = cli("provision", "--registry", reg, "--port", node.port, "--production")
        old = node.fs / "app_main.py"
        _install(node.fs)
        (node.fs / "boot.py").unlink()
        old.write_text("import machine\n")  # an app of an older citynode flash
        r3 = cli("provision", "--registry", reg, "--port", node.port, "--production")
    assert r2.returncode == 1 and "its boot.py runs code before main.py" in r2.stderr
    assert r3.returncode == 1 and "does not know production mode" in r3.stderr
    with Registry(reg) as rr:
        assert rr.count() == 0


def test_without_production_the_flag_is_off_and_the_node_stays_reachable(tmp_path):
    reg = str(tmp_path / "r.db")
    from provision_vnode import VirtualNode as BareRepl

    with BareRepl(tmp_path / "bare") as node:
        (node.cwd / "nvs.json").write_text(json.dumps({"cn_keys": {"prod": ["i", 1]}}))  # left over, say
        r = cli("provision", "--registry", reg, "--port", node.port)
        nvs = node.nvs()
    assert r.returncode == 0, r.stderr
    assert "prod" not in nvs["cn_keys"] and "production mode" not in r.stderr


# -- the listen after a failed REPL ----------------------------------------------------------------------------
class _Serial:
    """A pyserial port that records DTR/RTS changes and, once reset, prints a production node's boot line."""

    def __init__(self, says: bytes):
        self.lines: list = []
        self.timeout = None
        self.says = says
        self._out = b""

    def __setattr__(self, name, value):
        if name in ("dtr", "rts"):
            self.lines.append((name, value))
            if (name, value) == ("rts", False) and ("rts", True) in self.lines:
                self._out = self.says  # EN went high again: the board boots
        object.__setattr__(self, name, value)

    def read(self, n):
        data, self._out = self._out[:n], self._out[n:]
        if not data:
            time.sleep(0.01)
        return data


def test_listen_resets_the_board_as_esptool_does_and_reads_its_boot_line():
    ser = _Serial(b"ets Jun  8 2016 00:22:57\r\n" + production.MARK.encode() + b": REPL closed; ...\r\n")
    t0 = time.monotonic()
    data = production.listen(ser, seconds=3)
    assert production.said(data) and time.monotonic() - t0 < 1.5  # stops once the line came
    assert ser.lines == [("dtr", False), ("rts", True), ("rts", False)]  # GPIO0 high: a normal boot
    assert ser.timeout is None  # restored
    quiet = _Serial(b"")
    assert not production.closed(type("T", (), {"serial": quiet})(), "b''", seconds=0.3)
    assert production.closed(object(), "b'" + production.MARK + ": REPL closed'")  # what mpremote printed


# -- NVS and a reflash -----------------------------------------------------------------------------------------
def _table(*parts) -> bytes:
    """An ESP-IDF partition table: (type, subtype, offset, size, label) entries, then the MD5 entry."""
    out = b""
    for kind, sub, off, size, label in parts:
        out += struct.pack("<2sBBII16sI", b"\xaa\x50", kind, sub, off, size, label.encode(), 0)
    return out + b"\xeb\xeb" + b"\xff" * 14 + bytes(16)


MICROPYTHON_TABLE = _table((1, 2, 0x9000, 0x6000, "nvs"), (1, 1, 0xF000, 0x1000, "phy_init"),
                           (0, 0, 0x10000, 0x1F0000, "factory"), (1, 0x81, 0x200000, 0x200000, "vfs"))


def _image(table: bytes | None, size: int = 0x30000, offset: int = 0x1000) -> bytes:
    """A MicroPython-like image as makeimg.py lays it out: bootloader at `offset`, the table at 0x8000, 0xFF up
    to the app at 0x10000."""
    img = bytearray(b"\xff" * size)
    img[24:0x100] = bytes(range(24, 256))
    img[0:24] = bytes(24)
    img[0] = 0xE9  # an ESP image header; chip id (bytes 12-13) 0: ESP32
    if table is not None:
        img[0x8000 - offset:0x8000 - offset + len(table)] = table
    img[0x10000 - offset:] = bytes((i * 7) & 0xFF for i in range(size - (0x10000 - offset)))
    return bytes(img)


def test_the_partition_table_of_an_image_says_where_nvs_is():
    assert production.nvs_partitions(_image(MICROPYTHON_TABLE), 0x1000) == ([(0x9000, 0x6000)], True)
    assert production.nvs_partitions(_image(MICROPYTHON_TABLE, offset=0), 0) == ([(0x9000, 0x6000)], True)
    assert production.nvs_partitions(_image(None), 0x1000) == ([production.DEFAULT_NVS], False)
    moved = _table((1, 2, 0x3F0000, 0x10000, "nvs"), (0, 0, 0x10000, 0x100000, "factory"))
    assert production.nvs_partitions(_image(moved), 0x1000) == ([(0x3F0000, 0x10000)], True)


@pytest.mark.parametrize("no_stub", [True, False])
def test_a_reflash_leaves_no_key_in_nvs_where_the_image_covers_it_and_where_it_does_not(no_stub):
    board = get_board("ttgo-lora32-v2.1")
    keys = b"cn_keys app_key " * 0x600  # what a provisioned node holds there
    covered = _image(MICROPYTHON_TABLE)
    moved = _image(_table((1, 2, 0x3F0000, 0x6000, "nvs"), (0, 0, 0x10000, 0x100000, "factory")))
    with Esp32RomSim() as sim:
        sim.flash[0x9000:0xF000] = keys
        r = write_image(sim.url, board, covered, no_stub=no_stub, no_reset=True, connect_attempts=1)
        assert bytes(sim.flash[0x9000:0xF000]) == b"\xff" * 0x6000
        assert r.nvs is not None and r.nvs.how == ["image"] and r.nvs.ranges == [(0x9000, 0x6000)]
        sim.flash[0x3F0000:0x3F6000] = keys
        r = write_image(sim.url, board, moved, no_stub=no_stub, no_reset=True, connect_attempts=1)
        assert bytes(sim.flash[0x3F0000:0x3F6000]) == b"\xff" * 0x6000  # outside the image: erased on purpose
        assert r.nvs is not None and r.nvs.how == ["erased"]
        assert bytes(sim.flash[0x1000:0x1000 + len(moved)]) == moved  # the image itself is untouched


def test_flash_says_that_the_keys_are_gone(tmp_path, capsys):
    fw = tmp_path / "fw.bin"
    fw.write_bytes(_image(MICROPYTHON_TABLE))
    with Esp32RomSim() as sim:
        rc = main(["flash", "--board", "tbeam", "--port", sim.url, "--firmware", str(fw), "--image-only",
                   "--no-reset", "--connect-attempts", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    assert ("NVS 0x9000..0xf000 (its partition table) covered by the verified image: any keys, LoRaWAN session "
            "and production mode on this board are gone") in out

"""`citynode flash/boards/monitor`: boards files, image cache, esptool against the simulated ROM, mpremote against
the virtual node (MicroPython unix port on a pty)."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pty
import random
import socket
import subprocess
import threading
import time
import tty
from pathlib import Path
from types import SimpleNamespace

import pytest
import serial

from citynode.device.flash import app as flash_app
from citynode.device.boards import BoardError, get_board, load_board_file, load_boards
from citynode.cli import main
from citynode.device.flash import (MARKER, FlashError, compile_app, fetch_image, find_port, image_chip,
                            install_app, monitor, write_image)
from citynode.progress import Progress
from citynode.sim.hwsim.esp32rom import Esp32RomSim
from citynode.sim.hwsim.vnode import VirtualNode, micropython_exe

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"
MIP_INDEX = Path(__file__).resolve().parents[3] / "shared" / "mip-index"


@pytest.fixture(autouse=True)
def _radio_drivers_from_the_local_index(monkeypatch, tmp_path):
    """install_app/flash fetch micropython-lib's radio drivers for LoRa boards: here from the local copy of the
    index (never the public one), into a cache of this test's own."""
    monkeypatch.setenv("CITYNODE_MIP_INDEX", str(MIP_INDEX))
    monkeypatch.setenv("CITYNODE_CACHE", str(tmp_path / "citynode-cache"))


def image(n: int, seed: int = 7) -> bytes:
    data = random.Random(seed).randbytes(n)
    return b"\x00" + data[1:]  # not 0xE9: no ESP image header


@pytest.fixture
def fw_file(tmp_path):
    p = tmp_path / "micropython.bin"
    p.write_bytes(image(150_000))
    return p


@pytest.fixture
def app_src(tmp_path, monkeypatch):
    """A small app package in place of firmware/cnode (which other work changes): cnode + a subpackage."""
    src = tmp_path / "fw"
    (src / "cnode" / "sub").mkdir(parents=True)
    (src / "cnode" / "__init__.py").write_text("# test app\nVERSION = 3\n")
    (src / "cnode" / "sub" / "__init__.py").write_text("")
    (src / "cnode" / "sub" / "calc.py").write_text("def double(x):\n    return 2 * x\n")
    (src / "main.py").write_text(
        "from cnode.sub.calc import double\n\nprint('citynode test app running', double(21))\n")
    monkeypatch.setattr(flash_app, "FIRMWARE_DIR", src)
    return src


# -- boards ---------------------------------------------------------------------------------------------------
def test_all_five_boards_load_with_the_documented_chips_and_offsets():
    b = load_boards(BOARDS_DIR)
    assert sorted(b) == ["esp32-devkit-lora-e5", "heltec-wifi-lora-32-v2", "heltec-wifi-lora-32-v3", "tbeam",
                         "ttgo-lora32-v2.1", "virtual"]
    del b["virtual"]  # the development board: no hardware of its own
    assert {n: (x.chip, x.flash_offset) for n, x in b.items()} == {
        "esp32-devkit-lora-e5": ("esp32", 0x1000), "heltec-wifi-lora-32-v2": ("esp32", 0x1000),
        "heltec-wifi-lora-32-v3": ("esp32s3", 0x0), "tbeam": ("esp32", 0x1000), "ttgo-lora32-v2.1": ("esp32", 0x1000)}
    v3 = b["heltec-wifi-lora-32-v3"]
    assert v3.radio["type"] == "sx1262"
    assert v3.radio["pins"] == {"sck": 9, "mosi": 10, "miso": 11, "cs": 8, "reset": 12, "busy": 13, "dio1": 14}
    assert b["ttgo-lora32-v2.1"].radio["pins"]["dio0"] == 26
    assert b["heltec-wifi-lora-32-v2"].radio["pins"]["reset"] == 14
    assert any(s["driver"] == "gps_nmea" and s["bus"] == "uart" for s in b["tbeam"].sensors)
    assert b["esp32-devkit-lora-e5"].radio["type"] == "lora-e5"
    for x in b.values():
        assert x.radio["source"] and x.micropython["url"].startswith("https://micropython.org/")


def _broken(tmp_path, name, edit):
    raw = json.loads((BOARDS_DIR / f"{name}.json").read_text())
    edit(raw)
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(raw))
    return p


@pytest.mark.parametrize("edit, field", [
    (lambda r: r["radio"]["pins"].pop("busy"), "radio.pins.busy"),
    (lambda r: r.update(flash_offset="0x1000"), "flash_offset"),
    (lambda r: r.update(chip="esp8266"), "chip"),
    (lambda r: r["sensors"][0].update(address="0x80"), "sensors[0].address"),
    (lambda r: r["i2c"].update(scl=49), "i2c.scl"),
    (lambda r: r["micropython"].update(sha256="abc"), "micropython.sha256"),
    (lambda r: r.pop("battery"), "battery"),
    (lambda r: r.update(name="heltec-v3"), "name"),
])
def test_a_bad_board_file_names_the_file_and_the_field(tmp_path, edit, field):
    p = _broken(tmp_path, "heltec-wifi-lora-32-v3", edit)
    with pytest.raises(BoardError) as e:
        load_board_file(p)
    msg = str(e.value)
    assert msg.startswith("heltec-wifi-lora-32-v3.json: ") and field in msg


def test_unknown_board_lists_the_valid_ones():
    with pytest.raises(BoardError, match="unknown board 'heltec'; supported boards: esp32-devkit-lora-e5, "
                                          "heltec-wifi-lora-32-v2, heltec-wifi-lora-32-v3, tbeam, ttgo-lora32-v2.1"):
        get_board("heltec", BOARDS_DIR)


def test_boards_json_cli(capsys):
    assert main(["boards", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    v2 = next(r for r in rows if r["name"] == "heltec-wifi-lora-32-v2")
    assert v2["chip"] == "esp32" and v2["flash_offset"] == 4096 and v2["radio"]["type"] == "sx1276"
    assert len(rows) == 6 and sum(r["radio"]["type"] == "sx1276" for r in rows) == 4  # the virtual board too


def test_wrong_board_name_on_the_cli_is_one_line(capsys):
    assert main(["flash", "--board", "nope", "--port", "socket://127.0.0.1:1"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "supported boards: esp32-devkit-lora-e5" in err


# -- finding the port -----------------------------------------------------------------------------------------
def _port(dev, vid, desc="USB"):
    return SimpleNamespace(device=dev, vid=vid, description=desc)


def test_find_port_picks_the_one_board():
    ports = [_port("/dev/ttyS0", None), _port("/dev/ttyUSB0", 0x10C4)]
    assert find_port(None, lambda: ports) == "/dev/ttyUSB0"
    assert find_port("socket://x:1", lambda: []) == "socket://x:1"


def test_find_port_no_board_or_several():
    with pytest.raises(FlashError, match="no board found"):
        find_port(None, lambda: [_port("/dev/ttyS0", None)])
    with pytest.raises(FlashError, match=r"several boards plugged in: /dev/ttyUSB0 \(CP210x\), "
                                         r"/dev/ttyACM0 \(Espressif USB\); choose one with --port"):
        find_port(None, lambda: [_port("/dev/ttyUSB0", 0x10C4), _port("/dev/ttyACM0", 0x303A)])


# -- the image and its cache ----------------------------------------------------------------------------------
def _board_with_image(url, sha):
    b = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    return dataclasses.replace(b, micropython={"url": url, "sha256": sha, "version": "test"})


def test_pinned_image_is_downloaded_once_and_then_served_from_the_cache(tmp_path):
    src = tmp_path / "ESP32_TEST.bin"
    data = image(5000, seed=11)
    src.write_bytes(data)
    board = _board_with_image(src.as_uri(), hashlib.sha256(data).hexdigest())
    cache = tmp_path / "cache"
    got, where = fetch_image(board, cache=cache)
    assert got == data and Path(where) == cache / "firmware" / "ESP32_TEST.bin"
    src.unlink()  # no network any more
    assert fetch_image(board, cache=cache, offline=True)[0] == data


def test_wrong_checksum_is_refused_and_not_cached(tmp_path):
    src = tmp_path / "ESP32_TEST.bin"
    src.write_bytes(b"tampered")
    board = _board_with_image(src.as_uri(), "0" * 64)
    with pytest.raises(FlashError, match="has SHA-256 .*expected 0000"):
        fetch_image(board, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "firmware" / "ESP32_TEST.bin").exists()


def test_damaged_cache_entry_is_fetched_again(tmp_path):
    src = tmp_path / "ESP32_TEST.bin"
    data = image(3000, seed=12)
    src.write_bytes(data)
    board = _board_with_image(src.as_uri(), hashlib.sha256(data).hexdigest())
    cached = tmp_path / "cache" / "firmware" / "ESP32_TEST.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")
    assert fetch_image(board, cache=tmp_path / "cache")[0] == data
    assert cached.read_bytes() == data


def test_offline_without_cache_and_no_network_are_clear_errors(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    board = _board_with_image((tmp_path / "x.bin").as_uri(), "a" * 64)
    with pytest.raises(FlashError, match="not cached .* --offline"):
        fetch_image(board, cache=tmp_path / "cache", offline=True)
    real = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    assert real.image_sha256 is None  # pinned on first use instead (test_flash_image_lock.py)

    def no_network(url, *a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(FlashError, match="cannot download https://micropython.org/.* without network give "
                                         "--firmware FILE"):
        fetch_image(real, cache=tmp_path / "cache", images_lock=tmp_path / "images.lock")
    assert not (tmp_path / "images.lock").exists()


def test_image_chip_reads_the_esp_image_header():
    hdr = bytearray(32)
    hdr[0] = 0xE9
    hdr[12] = 9
    assert image_chip(bytes(hdr)) == "esp32s3"
    hdr[12] = 0
    assert image_chip(bytes(hdr)) == "esp32"
    assert image_chip(b"\x00" * 32) is None


# -- writing the image through esptool ------------------------------------------------------------------------
def test_write_image_rom_only_and_with_stub(fw_file):
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    data = fw_file.read_bytes()
    for no_stub in (True, False):
        with Esp32RomSim() as sim:
            r = write_image(sim.url, board, data, no_stub=no_stub, no_reset=True, connect_attempts=1)
            assert bytes(sim.flash[0x1000:0x1000 + len(data)]) == data
            assert sim.flash[:0x1000] == b"\xff" * 0x1000
            assert r.chip == "esp32" and r.mac == "24:0a:c4:12:34:56" and r.stub == (not no_stub)
            assert r.md5 == hashlib.md5(data).hexdigest()


def test_esp32s3_image_goes_to_offset_zero(fw_file):
    board = get_board("heltec-wifi-lora-32-v3", BOARDS_DIR)
    data = fw_file.read_bytes()
    with Esp32RomSim(chip="esp32s3", flash_size=8 << 20) as sim:
        write_image(sim.url, board, data, no_reset=True, connect_attempts=1)
        assert bytes(sim.flash[:len(data)]) == data


def test_flash_image_only_via_cli(fw_file, capsys):
    with Esp32RomSim() as sim:
        rc = main(["flash", "--board", "tbeam", "--port", sim.url, "--firmware", str(fw_file), "--image-only",
                   "--no-reset", "--connect-attempts", "1"])
        flashed = bytes(sim.flash[0x1000:0x1000 + fw_file.stat().st_size])
    out = capsys.readouterr()
    assert rc == 0 and flashed == fw_file.read_bytes()
    assert "wrote 150000 bytes at 0x1000, verified" in out.out
    assert out.err == ""  # piped: no progress bar


@pytest.mark.parametrize("sim_kw, message", [
    ({"chip": "esp32s3"}, "wrong chip: board tbeam has an esp32 but the chip on socket://127.0.0.1:"),
    ({"corrupt": True}, "verify failed: flash at 0x1000 does not match the image"),
    ({"busy": True}, "is busy: another program"),
    ({"silent": True}, "no answer from a board on socket://127.0.0.1:"),
])
def test_cli_failures_are_one_plain_line(fw_file, capsys, sim_kw, message):
    with Esp32RomSim(**sim_kw) as sim:
        rc = main(["flash", "--board", "tbeam", "--port", sim.url, "--firmware", str(fw_file), "--image-only",
                   "--no-reset", "--connect-attempts", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("citynode flash: error: ") and err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_no_board_at_port(fw_file, capsys):
    for port in ("/dev/ttyCITYNODE-NONE", "socket://127.0.0.1:1"):
        assert main(["flash", "--board", "tbeam", "--port", port, "--firmware", str(fw_file), "--image-only"]) == 1
        assert f"no board at {port}: the port does not exist" in capsys.readouterr().err


def test_port_held_by_another_program_is_busy(fw_file, capsys):
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    holder = serial.Serial(path, exclusive=True)  # like a serial monitor left open
    try:
        rc = main(["flash", "--board", "tbeam", "--port", path, "--firmware", str(fw_file), "--image-only"])
    finally:
        holder.close()
        os.close(master)
        os.close(slave)
    assert rc == 1
    assert f"port {path} is busy: another program" in capsys.readouterr().err


def test_firmware_for_another_chip_is_refused_before_connecting(tmp_path, capsys):
    hdr = bytearray(image(4096))
    hdr[0], hdr[12], hdr[13] = 0xE9, 9, 0  # an ESP32-S3 app image header
    f = tmp_path / "s3.bin"
    f.write_bytes(bytes(hdr))
    assert main(["flash", "--board", "tbeam", "--port", "socket://127.0.0.1:1", "--firmware", str(f),
                 "--image-only"]) == 1
    assert "the firmware is an esp32s3 image but board tbeam has an esp32" in capsys.readouterr().err


class _Interrupting(Progress):
    def __init__(self, part, at):
        super().__init__(enabled=False)
        self.part, self.at = part, at

    def update(self, part, frac, label=None):
        super().update(part, frac, label)
        if part == self.part and frac >= self.at:
            raise KeyboardInterrupt


def test_ctrl_c_during_the_image_leaves_it_unverified(fw_file):
    board = get_board("tbeam", BOARDS_DIR)
    data = fw_file.read_bytes()
    with Esp32RomSim() as sim:
        with pytest.raises(KeyboardInterrupt):
            write_image(sim.url, board, data, no_stub=True, no_reset=True, connect_attempts=1,
                        progress=_Interrupting("image", 0.3))
        assert bytes(sim.flash[0x1000:0x1000 + len(data)]) != data


def test_ctrl_c_on_the_cli_says_the_board_is_unfinished(monkeypatch, capsys):
    import citynode.cli.flash as cmd

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd, "flash", interrupted)
    assert main(["flash", "--board", "tbeam", "--port", "socket://127.0.0.1:1"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "unfinished" in err


# -- the app onto the virtual node ----------------------------------------------------------------------------
def test_compile_app_makes_xtensawin_mpy(app_src, tmp_path):
    files = compile_app("esp32", tmp_path / "out")
    assert [d for d, _ in files] == ["lib/cnode/__init__.mpy", "lib/cnode/sub/__init__.mpy", "lib/cnode/sub/calc.mpy"]
    for _, p in files:
        head = p.read_bytes()[:4]
        assert head[0] == ord("M") and head[1] == 6  # .mpy version 6 (MicroPython 1.19+)


def test_mpremote_writes_files_onto_the_virtual_node():
    from mpremote.transport_serial import SerialTransport

    with VirtualNode() as node:
        t = SerialTransport(node.port, baudrate=115200)
        try:
            t.enter_raw_repl(soft_reset=False)
            t.fs_mkdir("lib/x")
            blob = bytes(range(256)) * 20
            t.fs_writefile("lib/x/blob.bin", blob)
            assert t.fs_readfile("lib/x/blob.bin") == blob
        finally:
            t.close()
        assert (node.fs / "lib" / "x" / "blob.bin").read_bytes() == blob


def _read_until(port, text, limit_s=10.0):
    buf = b""
    with serial.Serial(port, 115200, timeout=0.2) as s:
        end = time.monotonic() + limit_s
        while text.encode() not in buf and time.monotonic() < end:
            buf += s.read(256)
    return buf.decode(errors="replace")


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_install_app_selftest_and_reboot_into_the_app(app_src):
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    with VirtualNode(i2c=[0x76]) as node:
        result = install_app(node.port, board)
        assert result.failures == []
        table = result.table()
        assert "bme280        ok      i2c 0x76 answers" in table
        assert "app           ok      cnode imports" in table
        assert "pms5003       skip" in table
        assert "sensors       skip    no cnode.board in this app" in table
        fs = node.fs
        assert not (fs / MARKER).exists()
        kept = json.loads((fs / "board.json").read_text())  # where firmware/cnode/board.py reads it
        assert kept["name"] == "ttgo-lora32-v2.1" and kept["radio"]["pins"]["dio0"] == 26
        assert kept["sensors"][0] == {"driver": "bme280", "bus": "i2c", "address": 0x76}
        assert (fs / "app_main.py").read_text().startswith("from cnode.sub.calc import double")
        assert (fs / "lib" / "cnode" / "sub" / "calc.mpy").is_file()
        # machine.reset() rebooted the node; main.py started the app
        assert "citynode test app running 42" in _read_until(node.port, "app running")
        assert node.boots == 2


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_missing_sensor_fails_the_selftest_and_keeps_the_marker(app_src):
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    with VirtualNode(i2c=[]) as node:
        result = install_app(node.port, board, no_reset=True)
        assert [r[0] for r in result.failures] == ["bme280"]
        assert (node.fs / MARKER).exists()


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_ctrl_c_during_install_leaves_the_node_marked_unfinished(app_src):
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    with VirtualNode(i2c=[0x76]) as node:
        install_app(node.port, board, no_reset=True)
        with pytest.raises(KeyboardInterrupt):
            install_app(node.port, board, no_reset=True, progress=_Interrupting("app", 0.3))
        fs = node.fs
        marker = (fs / MARKER).exists()
        proc = subprocess.run([micropython_exe(), "main.py"], cwd=fs, capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, MICROPYPATH=f".:{fs / 'lib'}"))
    assert marker
    assert "install unfinished" in proc.stdout and "app running" not in proc.stdout


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_full_flash_via_cli(app_src, fw_file, capsys):
    with Esp32RomSim() as sim, VirtualNode(i2c=[0x76]) as node:
        rc = main(["flash", "--board", "ttgo-lora32-v2.1", "--port", sim.url, "--repl-port", node.port,
                   "--firmware", str(fw_file), "--no-reset", "--connect-attempts", "1"])
        assert not (node.fs / MARKER).exists()
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "verified" in out.out and "bme280        ok" in out.out


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_full_flash_with_a_missing_sensor_exits_1(app_src, fw_file, capsys):
    with Esp32RomSim() as sim, VirtualNode(i2c=[]) as node:
        rc = main(["flash", "--board", "ttgo-lora32-v2.1", "--port", sim.url, "--repl-port", node.port,
                   "--firmware", str(fw_file), "--no-reset", "--connect-attempts", "1"])
    out = capsys.readouterr()
    assert rc == 1
    assert "bme280        FAIL    i2c 0x76 does not answer" in out.out
    assert out.err == ("citynode flash: error: self-test failed: bme280 (i2c 0x76 does not answer); "
                       f"the node is marked unfinished ({MARKER})\n")


# -- progress and monitor -------------------------------------------------------------------------------------
def test_progress_is_quiet_when_piped_and_one_bar_on_a_terminal():
    quiet = io.StringIO()
    p = Progress(stream=quiet)
    p.plan(image=100, app=100)
    p.update("image", 1.0, "writing")
    p.finish()
    assert quiet.getvalue() == ""
    tty_like = io.StringIO()
    p = Progress(stream=tty_like, enabled=True, width=10)
    p.plan(image=300, app=100)
    p.update("image", 0.5, "writing")
    p.update("app", 1.0, "installing")
    p.finish()
    frames = tty_like.getvalue().split("\r")[1:]
    assert frames[0].endswith("writing                      [###.......]  37.5%")
    assert frames[-1] == "installing                   [######....]  62.5%\n"


def test_monitor_reconnects_when_the_port_comes_back():
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def board():
        s = lsock
        for text in (b"boot 1: hello\n", b"boot 2: back again\n"):
            s.listen(1)
            c, _ = s.accept()
            time.sleep(0.2)  # pyserial drops what arrived before open() returned, as a late monitor would
            c.sendall(text)
            time.sleep(0.2)
            c.close()
            s.close()  # the port disappears ...
            time.sleep(0.3)
            s = socket.socket()  # ... and comes back
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        s.close()

    threading.Thread(target=board, daemon=True).start()
    got, notes = bytearray(), []
    deadline = time.monotonic() + 10
    monitor(f"socket://127.0.0.1:{port}", got.extend, retry_s=0.05, notify=notes.append,
            should_stop=lambda: b"back again" in got or time.monotonic() > deadline)
    assert bytes(got) == b"boot 1: hello\nboot 2: back again\n"
    assert any("went away" in n for n in notes) and any(n.startswith("reconnected") for n in notes)


def test_repl_port_errors_are_classified():
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    with pytest.raises(FlashError, match="no board at /dev/ttyCITYNODE-NONE: the port does not exist"):
        install_app("/dev/ttyCITYNODE-NONE", board, files=[])
    with VirtualNode() as node:
        holder = serial.Serial(node.port, exclusive=True)
        try:
            with pytest.raises(FlashError, match=f"port {node.port} is busy"):
                install_app(node.port, board, files=[])
        finally:
            holder.close()


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_a_crashing_selftest_is_one_line(app_src):
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    broken = dict(board.node_config(), i2c={"scl": 22})  # no sda: the self-test script itself fails
    broken["sensors"] = None
    with VirtualNode() as node:
        with pytest.raises(FlashError, match="self-test crashed on the node: TypeError"):
            install_app(node.port, board, config=broken, no_reset=True)


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_selftest_powers_the_vext_rail_on_heltec_boards(app_src):
    board = get_board("heltec-wifi-lora-32-v3", BOARDS_DIR)
    assert board.power["vext"] == {"pin": 36, "active": 0}
    with VirtualNode(i2c=[0x44, 0x62]) as node:
        result = install_app(node.port, board, no_reset=True)
    assert [r[:2] for r in result.rows] == [("micropython", "ok"), ("app", "ok"), ("radio driver", "ok"),
                                            ("i2c", "ok"), ("sht4x", "ok"), ("scd4x", "ok"), ("sensors", "skip"),
                                            ("radio", "skip")]  # this test app has no cnode.loraradio


def test_monitor_cli_prints_the_log(capfdbinary):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def board():
        c, _ = srv.accept()
        time.sleep(0.2)
        c.sendall(b"I (312) cnode: sampling bme280\r\n")
        time.sleep(0.1)
        c.close()
        srv.close()

    threading.Thread(target=board, daemon=True).start()
    assert main(["monitor", "--port", f"socket://127.0.0.1:{srv.getsockname()[1]}", "--seconds", "1.5"]) == 0
    out = capfdbinary.readouterr()
    assert out.out == b"I (312) cnode: sampling bme280\r\n"
    assert b"went away" in out.err


FAKE_BOARD_MODULE = """\
# stands in for firmware/cnode/board.py: same interface (Hardware(board, machine).slots(clock), selftest)
class Hardware:
    def __init__(self, board, machine):
        self.board = board
        self.machine = machine
        self.powered = False

    def power_on(self, clock=None):
        self.powered = True

    def slots(self, clock):
        return [(s["driver"], self.powered) for s in self.board["sensors"]]


def selftest(slots, out=print):
    out("sensor     value")
    for name, powered in slots:
        out("%-10s %s" % (name, "21.5" if powered else "FAILED: no power"))
    failed = sum(1 for _, p in slots if not p) + len([n for n, _ in slots if n == "sds011"])
    out("selftest: %d sensors, %d failed" % (len(slots), failed))
    return failed
"""


@pytest.mark.mipindex  # a LoRa board: its install needs micropython-lib's drivers from the index
def test_the_firmware_selftest_table_is_shown_and_its_failures_count(app_src):
    (app_src / "cnode" / "board.py").write_text(FAKE_BOARD_MODULE)
    ttgo = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    with VirtualNode(i2c=[0x76]) as node:
        ok = install_app(node.port, ttgo, no_reset=True)
        assert ok.failures == []
        assert ok.firmware_table == ["sensor     value", "bme280     21.5", "pms5003    21.5",
                                     "selftest: 2 sensors, 0 failed"]
        assert ok.table().endswith("\n\nsensor     value\nbme280     21.5\npms5003    21.5\n"
                                   "selftest: 2 sensors, 0 failed")
        v2 = get_board("heltec-wifi-lora-32-v2", BOARDS_DIR)  # has an SDS011, which the fake always fails
        bad = install_app(node.port, v2, no_reset=True)
        assert bad.failures == [("sensors", "FAIL", "firmware self-test: 1 failed")]
        assert (node.fs / MARKER).exists()


# -- micropython-lib's radio drivers (citynode.device.mip) -----------------------------------------------------------
def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.mipindex
def test_install_app_installs_the_radio_drivers_and_the_selftest_imports_them(app_src, mip_url, tmp_path):
    """...over a stale .py of a hand install (mip --no-mpy), which would shadow the .mpy: it is removed."""
    from citynode.device.mip import driver_files

    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    want = {dest: hashlib.sha256(data).hexdigest() for dest, data in driver_files(board, mip_url, cache=tmp_path)}
    assert sorted(want) == ["lib/lora/__init__.mpy", "lib/lora/modem.mpy", "lib/lora/sx127x.mpy",
                            "lib/lora/sync_modem.mpy"]
    with VirtualNode(i2c=[0x76]) as node:
        (node.fs / "lib" / "lora").mkdir()
        (node.fs / "lib" / "lora" / "sx127x.py").write_text("raise ImportError('an old hand install')\n")
        result = install_app(node.port, board, mip_index=mip_url, no_reset=True)
        got = {p.relative_to(node.fs).as_posix(): _sha(p) for p in (node.fs / "lib" / "lora").iterdir()}
        marker = (node.fs / MARKER).exists()
    assert result.failures == [] and not marker
    assert ("radio driver", "ok", "lora 0.2.0, lora.sx127x 0.1.2") in result.rows
    assert got == want


def test_radio_driver_row_fails_without_the_drivers_and_keeps_the_marker(app_src):
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    with VirtualNode(i2c=[0x76]) as node:
        result = install_app(node.port, board, drivers=[], no_reset=True)
        assert result.failures == [("radio driver", "FAIL", "import lora: ImportError: no module named 'lora'")]
        assert (node.fs / MARKER).exists()


def test_radio_driver_row_is_skipped_for_an_at_modem(app_src):
    board = get_board("esp32-devkit-lora-e5", BOARDS_DIR)
    with VirtualNode(i2c=[0x76]) as node:
        result = install_app(node.port, board, mip_index="http://127.0.0.1:1", no_reset=True)  # nothing to fetch
    assert ("radio driver", "skip", "lora-e5: no micropython-lib driver needed") in result.rows
    assert result.failures == []


def _tampered(tmp_path):
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(MIP_INDEX, idx)
    f = idx / "file" / "41" / "4149243a"  # lora/sx127x.py
    f.write_bytes(f.read_bytes().replace(b"SX1276", b"SX1278", 1))
    return idx


def _no_sx127x(tmp_path):
    import shutil

    idx = tmp_path / "idx"
    shutil.copytree(MIP_INDEX, idx)
    doc = json.loads((idx / "index.json").read_text())
    doc["packages"] = [p for p in doc["packages"] if p["name"] != "lora-sx127x"]
    (idx / "index.json").write_text(json.dumps(doc))
    return idx


def _malformed(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "index.json").write_text("<html>moved</html>")
    return idx


@pytest.mark.mipindex
@pytest.mark.parametrize("make, message", [
    (None, "cannot reach the mip index http://127.0.0.1:{port} (Connection refused); without network give "
           "--mip-index DIR"),
    (_tampered, "hash mismatch: lora/sx127x.py (lora-sx127x 0.1.2) from {url}/file/41/4149243a has SHA-256 "),
    (_no_sx127x, "package lora-sx127x is not in the mip index {url}"),
    (_malformed, "malformed mip index: {url}/index.json is not valid JSON"),
], ids=["unreachable", "tampered", "package-missing", "malformed"])
def test_a_driver_fetch_failure_in_install_app_keeps_the_marker(app_src, tmp_path, serve_folder, make, message):
    board = get_board("ttgo-lora32-v2.1", BOARDS_DIR)
    port = _closed_port()
    url = f"http://127.0.0.1:{port}" if make is None else serve_folder(make(tmp_path))
    with VirtualNode(i2c=[0x76]) as node:
        with pytest.raises(FlashError) as e:
            install_app(node.port, board, mip_index=url, no_reset=True)
        assert (node.fs / MARKER).exists()  # marked unfinished before the fetch, and left so
        assert not (node.fs / "lib" / "lora").exists() and not (node.fs / "board.json").exists()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(message.format(port=port, url=url)), msg


@pytest.mark.mipindex
def test_flash_fetches_the_drivers_before_writing_anything(app_src, fw_file, capsys):
    port = _closed_port()
    with Esp32RomSim() as sim:
        rc = main(["flash", "--board", "heltec-wifi-lora-32-v2", "--port", sim.url, "--repl-port", "/dev/null",
                   "--firmware", str(fw_file), "--no-reset", "--connect-attempts", "1",
                   "--mip-index", f"http://127.0.0.1:{port}"])
        untouched = bytes(sim.flash) == b"\xff" * len(sim.flash)
    err = capsys.readouterr().err
    assert rc == 1 and untouched
    assert err == (f"citynode flash: error: cannot reach the mip index http://127.0.0.1:{port} (Connection refused); "
                   "without network give --mip-index DIR (an offline copy of the index)\n")


@pytest.mark.mipindex
def test_full_flash_of_a_heltec_v2_installs_the_drivers_from_the_index_over_http(app_src, fw_file, capsys,
                                                                                 mip_url, tmp_path):
    from citynode.device.mip import driver_files

    board = get_board("heltec-wifi-lora-32-v2", BOARDS_DIR)
    want = {dest: hashlib.sha256(data).hexdigest()
            for dest, data in driver_files(board, MIP_INDEX, cache=tmp_path / "expected")}
    with Esp32RomSim() as sim, VirtualNode(i2c=[0x76]) as node:
        rc = main(["flash", "--board", board.name, "--port", sim.url, "--repl-port", node.port,
                   "--firmware", str(fw_file), "--no-reset", "--connect-attempts", "1", "--mip-index", mip_url])
        got = {p.relative_to(node.fs).as_posix(): _sha(p) for p in (node.fs / "lib" / "lora").iterdir()}
        marker = (node.fs / MARKER).exists()
        kept = json.loads((node.fs / "board.json").read_text())
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert got == want and sorted(got) == ["lib/lora/__init__.mpy", "lib/lora/modem.mpy", "lib/lora/sx127x.mpy",
                                           "lib/lora/sync_modem.mpy"]
    assert not marker and kept["radio"]["type"] == "sx1276"
    assert "radio driver  ok      lora 0.2.0, lora.sx127x 0.1.2" in out.out


def test_one_malformed_board_file_leaves_the_other_boards_usable(tmp_path, capsys):
    import shutil

    for f in BOARDS_DIR.glob("*.json"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "broken.json").write_text("{ not json")
    broken: dict = {}
    boards = load_boards(tmp_path, broken)
    assert "tbeam" in boards and list(broken) == ["broken"]
    assert get_board("tbeam", tmp_path).name == "tbeam"
    with pytest.raises(BoardError, match="broken.json: not valid JSON"):
        get_board("broken", tmp_path)


def test_monitor_holds_the_port_so_another_tool_is_told_it_is_busy():
    import os
    import threading

    import serial

    from citynode.device.flash import monitor

    master, slave = os.openpty()
    path = os.ttyname(slave)
    said: list[str] = []
    stop = threading.Event()
    t = threading.Thread(target=monitor, args=(path, lambda b: None), kwargs={"notify": said.append,
                                                                            "should_stop": stop.is_set})
    t.start()
    try:
        end = time.monotonic() + 5
        while not said and time.monotonic() < end:
            time.sleep(0.02)
        assert said == [f"connected to {path}"]
        with pytest.raises(serial.SerialException, match="exclusively lock"):
            serial.Serial(path, exclusive=True)
        stop.set()
        t.join(5)
        serial.Serial(path, exclusive=True).close()  # released once the monitor stops
    finally:
        stop.set()
        t.join(5)
        os.close(master)
        os.close(slave)


def test_a_board_that_stops_answering_during_the_install_is_an_error_not_a_hang(app_src):
    """The node freezes (SIGSTOP) once the REPL is open: install_app gives up after quiet_s with what to do,
    instead of waiting for ever (mpremote alone would)."""
    import signal

    from mpremote.transport_serial import SerialTransport

    board = get_board("virtual", BOARDS_DIR)
    with VirtualNode(i2c=[0x76]) as node:
        def frozen(port, baudrate):
            t = SerialTransport(port, baudrate=baudrate)
            proc = node._proc
            assert proc is not None

            def enter_raw_repl(soft_reset=False):
                type(t).enter_raw_repl(t, soft_reset=soft_reset)
                proc.send_signal(signal.SIGSTOP)  # the board stops answering from here on
            t.enter_raw_repl = enter_raw_repl
            return t

        t0 = time.monotonic()
        try:
            with pytest.raises(FlashError, match=r"stopped answering \(2 s without a byte\): unplug it"):
                install_app(node.port, board, transport_factory=frozen, drivers=[], quiet_s=2)
        finally:
            if node._proc is not None:
                node._proc.send_signal(signal.SIGCONT)
        assert time.monotonic() - t0 < 15


def test_a_link_lost_mid_write_is_said_as_such_not_as_a_busy_port(fw_file, capsys):
    with Esp32RomSim(drop_after_blocks=3) as sim:
        rc = main(["flash", "--board", "tbeam", "--port", sim.url, "--firmware", str(fw_file), "--image-only",
                   "--no-stub"])
    err = capsys.readouterr().err
    assert rc == 1 and "busy" not in err, err
    assert f"the link to the board on {sim.url} was lost while writing (cable, hub or power?)" in err


def test_a_stub_that_does_not_start_suggests_no_stub(fw_file, capsys):
    with Esp32RomSim(stub_fails="garbage") as sim:
        rc = main(["flash", "--board", "tbeam", "--port", sim.url, "--firmware", str(fw_file), "--image-only"])
    err = capsys.readouterr().err
    assert rc == 1 and f"the flasher stub did not start on {sim.url}" in err and "--no-stub" in err, err
    with Esp32RomSim() as sim:  # and with --no-stub the same board is flashed
        assert main(["flash", "--board", "tbeam", "--port", sim.url, "--firmware", str(fw_file), "--image-only",
                     "--no-stub"]) == 0


def test_a_chip_gone_silent_ends_the_write_after_the_timeout_with_the_stub_hint(fw_file):
    """esptool waits for ever for the stub's greeting on a silent chip; the watch ends it."""
    board = get_board("tbeam", BOARDS_DIR)
    t0 = time.monotonic()
    with Esp32RomSim(stub_fails="silent") as sim:
        with pytest.raises(FlashError, match="the flasher stub did not start .*timed out: 2 s without a byte.*"
                                             "--no-stub"):
            write_image(sim.url, board, fw_file.read_bytes(), quiet_s=2)
    assert time.monotonic() - t0 < 15

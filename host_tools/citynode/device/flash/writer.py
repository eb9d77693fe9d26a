"""Writing the image with esptool's library API: its log kept and its progress turned into ours."""
from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass, field

from citynode.device.boards import ESPTOOL_CHIP_NAMES, Board
from citynode.device.flash.errors import FlashError
from citynode.device.flash.image import image_chip
from citynode.device.flash.port import QUIET_S, _port_error, _Watch
from citynode.device.production import NvsErase, erase_nvs
from citynode.progress import Progress

ROM_BAUD = 115200


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

    _check_image(image, board)
    t0 = time.monotonic()
    with esptool_logging(progress) as logger:
        esp = _connect(port, no_reset, connect_attempts)
        stage = "detect"  # what is under way, for the error if the link goes
        watch = _Watch(esp._port, quiet_s)
        try:
            found, mac = _identify(esp, board, port)
            stage = "stub"
            if not no_stub:
                esp = cmds.run_stub(esp)
            stage = "write"
            _raise_baud(esp, baud)
            md5 = _write_verified(esp, board, image, compress, progress)
            nvs = erase_nvs(esp, cmds, image, board.flash_offset)  # no key survives a reflash
            if not no_reset:
                cmds.reset_chip(esp, "hard-reset")
            return ImageResult(chip=found, mac=mac, offset=board.flash_offset, size=len(image), md5=md5,
                               seconds=time.monotonic() - t0, stub=esp.IS_STUB, log=logger.lines, nvs=nvs)
        except Exception as e:
            err = _write_failure(e, port, board, stage, watch.fired, quiet_s)
            if err is None:
                raise
            raise err from None
        finally:
            watch.stop()
            with contextlib.suppress(Exception):
                esp._port.close()


def _check_image(image: bytes, board: Board) -> None:
    want = image_chip(image)
    if want is not None and want != board.chip:
        raise FlashError(f"the firmware is an {want} image but board {board.name} has an {board.chip}")


def _connect(port: str, no_reset: bool, connect_attempts: int):
    """esptool's link to the chip's ROM loader (the board reset into it unless `no_reset`)."""
    from esptool import cmds
    from esptool.util import FatalError
    from serial import SerialException

    try:
        return cmds.detect_chip(port, baud=ROM_BAUD, connect_mode="no-reset" if no_reset else "default-reset",
                                connect_attempts=connect_attempts)
    except (FatalError, SerialException, OSError) as e:
        raise _port_error(e, port) from None


def _identify(esp, board: Board, port: str) -> tuple[str, str]:
    """The chip (which must be the board's) and its MAC address."""
    chip_name: str = esp.CHIP_NAME
    found = ESPTOOL_CHIP_NAMES.get(chip_name, chip_name)
    if found != board.chip:
        raise FlashError(f"wrong chip: board {board.name} has an {board.chip} but the chip on {port} is an "
                         f"{esp.CHIP_NAME}; pick the right --board")
    raw_mac = esp.read_mac("BASE_MAC")  # the base class is typed NoReturn; chip classes return bytes
    mac = ":".join(f"{b:02x}" for b in raw_mac)  # pyright: ignore[reportGeneralTypeIssues]
    return found, mac


def _raise_baud(esp, baud: int) -> None:
    from esptool.util import NotImplementedInROMError

    if baud != ROM_BAUD:
        try:
            esp.change_baud(baud)
        except NotImplementedInROMError:
            pass


def _write_verified(esp, board: Board, image: bytes, compress: bool, progress: Progress | None) -> str:
    """Write the image at the board's offset, then compare the flash's MD5 with the image's; returns the MD5."""
    from esptool import cmds

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
    return md5


def _write_failure(e: Exception, port: str, board: Board, stage: str, fired: bool,
                   quiet_s: float) -> FlashError | None:
    """What an error during the write means for the technician; None: raise it as it is. `fired`: the board
    was silent too long (the watch closed the port)."""
    from esptool.util import FatalError
    from serial import SerialException

    silent = f"timed out: {quiet_s:.0f} s without a byte"
    if isinstance(e, FatalError):
        if fired:
            e = FatalError(silent)
        if "MD5 of file does not match" in str(e) or "Verify failed" in str(e):
            return FlashError(f"verify failed: flash at {board.flash_offset:#x} does not match the image "
                              "(MD5 mismatch); the board may be faulty, try another cable or board")
        if "is not an" in str(e) and "image" in str(e):
            return FlashError(f"the firmware is not for this chip: {str(e).splitlines()[0]}")
        return _port_error(e, port, stage)
    if isinstance(e, (SerialException, OSError)):
        return _port_error(OSError(silent) if fired else e, port, stage)
    return _port_error(OSError(silent), port, stage) if fired else None

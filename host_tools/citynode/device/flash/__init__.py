"""Flashing a node: MicroPython image via esptool's library API, then the app via mpremote, then a self-test.

The app goes with the micropython-lib packages its radio needs (citynode.device.mip: pinned, verified, compiled).

The steps are separate functions (find_port, fetch_image, write_image, compile_app, install_app; install_app ends
with the self-test and parse_selftest reads its table) that `flash()` chains under one progress bar. Every failure a technician can meet is a FlashError with one plain line.

The package by step: errors (FlashError), port (find_port, bounded waits, port errors), image (fetch_image,
pinning, image_chip), writer (write_image through esptool), app (compile_app, install_app, open_repl), selftest
(SelfTest, parse_selftest) and serial_monitor (monitor). Every public name is importable from here.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from citynode.device.boards import Board
from citynode.device.flash.app import (APP_MAIN, FIRMWARE_DIR, MAIN_PY, MARKER, MPY_ARCH, compile_app, install_app,
                                       mpy_cross, open_repl)
from citynode.device.flash.errors import FlashError, FlashInterrupted
from citynode.device.flash.image import IMAGE_CHIP_IDS, cache_dir, fetch_image, image_chip, sha256_hex
from citynode.device.flash.port import QUIET_S, USB_VIDS, find_port
from citynode.device.flash.selftest import CONFIG_FILE, SELFTEST_PY, SelfTest, parse_selftest
from citynode.device.flash.serial_monitor import monitor
from citynode.device.flash.writer import ROM_BAUD, ImageResult, esptool_logging, write_image
from citynode.progress import Progress

JobProgress = Progress  # the flash job's bar is citynode.progress.Progress, the one every command draws

__all__ = ["APP_MAIN", "CONFIG_FILE", "FIRMWARE_DIR", "IMAGE_CHIP_IDS", "MAIN_PY", "MARKER", "MPY_ARCH", "QUIET_S",
           "ROM_BAUD", "SELFTEST_PY", "USB_VIDS", "FlashError", "FlashInterrupted", "FlashReport", "ImageResult",
           "JobProgress", "Progress", "SelfTest", "cache_dir", "compile_app", "esptool_logging", "fetch_image",
           "find_port", "flash", "image_chip", "install_app", "monitor", "mpy_cross", "open_repl", "parse_selftest",
           "sha256_hex", "write_image"]


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

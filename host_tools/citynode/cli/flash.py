"""`citynode flash`, `citynode boards` and `citynode monitor`."""
from __future__ import annotations

import argparse
import json
import sys
import time

from citynode.device.boards import get_board, load_boards
from citynode.cli import add_command
from citynode.device.flash import MARKER, FlashError, FlashInterrupted, flash, monitor
from citynode.progress import Progress
from citynode.device.imagelock import DEFAULT_NAME


def register(sub) -> None:
    p = add_command(sub, "flash", cmd_flash,
                    "Flash MicroPython, install the app, its radio drivers (micropython-lib) and its config, verify, "
                    "and run the node's self-test.",
                    "citynode flash --board heltec-wifi-lora-32-v3 --port /dev/ttyUSB0\n"
                    "  citynode flash --board tbeam --port /dev/ttyUSB0 --mip-index ~/mirror/micropython-lib")
    assert p.description is not None  # add_command always gives one
    p.description = p.description.replace("\n\nExample:", (
        "\n\nWriting the image erases the board's NVS partition (the image covers it; if not, it is erased\n"
        "separately and read back): its keys, LoRaWAN session and production mode are gone, and it needs\n"
        "`citynode provision` again. This is the way back for a node in production mode (docs/security.md)."
        "\n\nThe image is the board file's MicroPython release, downloaded once and cached. Where the board file\n"
        "pins no SHA-256 (ours do not), the first download's SHA-256 is pinned in the image lock\n"
        f"(./{DEFAULT_NAME}, or --images-lock FILE) and shown once: commit that file.\n"
        "Every later flash checks the image against it and refuses one that changed."
        "\n\nExample:"), 1)
    p.add_argument("--board", required=True, help="board name (see `citynode boards`)")
    p.add_argument("--port", help="device path or pyserial URL (socket://host:port); default: the one board "
                                  "plugged in")
    p.add_argument("--firmware", metavar="FILE", help="MicroPython image to write instead of the board's pinned one")
    p.add_argument("--baud", type=int, default=460800, help="baud rate for writing the image (default 460800)")
    p.add_argument("--no-reset", action="store_true",
                   help="do not reset the board into the loader or afterwards (it is already in download mode)")
    p.add_argument("--no-stub", action="store_true", help="talk to the ROM loader only (no flasher stub)")
    p.add_argument("--image-only", action="store_true", help="write and verify the MicroPython image, then stop")
    p.add_argument("--repl-port", help="port of the MicroPython REPL after flashing, if not --port (boards with "
                                       "native USB come back under another name)")
    p.add_argument("--offline", action="store_true", help="never download: use the cache or --firmware")
    p.add_argument("--images-lock", metavar="FILE",
                   help="the image lock: the SHA-256 of every MicroPython image downloaded, pinned on first use "
                        "(shown once) and checked at every later flash; commit it (default $CITYNODE_IMAGES_LOCK "
                        f"or ./{DEFAULT_NAME})")
    p.add_argument("--allow-unpinned", action="store_true", help=argparse.SUPPRESS)  # old scripts: now the default
    p.add_argument("--connect-attempts", type=int, default=3, help="tries to reach the ROM loader (default 3)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="the longest the board may stay silent while the app is installed (default 30)")
    p.add_argument("--mip-index", metavar="URL|DIR",
                   help="mip index for micropython-lib's radio drivers (lora, pinned in mip-lock.json): an "
                        "http(s) URL or a local copy of the index; default $CITYNODE_MIP_INDEX or "
                        "https://micropython.org/pi/v2 (verified sources are cached, so --offline works afterwards)")

    p = add_command(sub, "boards", cmd_boards, "List the supported boards.", "citynode boards --json")
    p.add_argument("--json", action="store_true",
                   help="a JSON list of board objects (name, chip, flash_offset, radio, pins, sensors, ...)")

    p = add_command(sub, "monitor", cmd_monitor, "Print a board's serial log; reconnect when the port comes back.",
                    "citynode monitor --port /dev/ttyUSB0")
    p.add_argument("--port", help="device path or pyserial URL; default: the one board plugged in")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")


def cmd_flash(args) -> int:
    board = get_board(args.board)
    progress = Progress()
    try:
        report = flash(board, port=args.port, firmware=args.firmware, baud=args.baud, no_reset=args.no_reset,
                       no_stub=args.no_stub, image_only=args.image_only, repl_port=args.repl_port,
                       progress=progress, offline=args.offline, allow_unpinned=args.allow_unpinned,
                       connect_attempts=args.connect_attempts, mip_index=args.mip_index, quiet_s=args.timeout,
                       images_lock=args.images_lock)
    except KeyboardInterrupt:
        progress.finish()
        where = args.port or "the board"
        raise FlashInterrupted(f"interrupted: {where} is unfinished (no verified image, or {MARKER} left on the node); "
                         "run citynode flash again") from None
    img = report.image
    print(f"{board.name}: {img.chip} {img.mac} on {report.port}: wrote {img.size} bytes at {img.offset:#x}, "
          f"verified (MD5 {img.md5}) in {img.seconds:.1f} s")
    if img.nvs is not None:
        print(img.nvs.line())
    if report.selftest is None:
        return 0
    print(report.selftest.table())
    fails = report.selftest.failures
    if fails:
        names = ", ".join(f"{item} ({detail})" for item, _, detail in fails)
        raise FlashError(f"self-test failed: {names}; the node is marked unfinished ({MARKER})")
    return 0


def cmd_boards(args) -> int:
    broken: dict = {}
    boards = load_boards(broken=broken)
    for err in broken.values():
        sys.stderr.write(f"citynode boards: warning: skipped {err}\n")
    if args.json:
        print(json.dumps([b.as_dict() for b in boards.values()], indent=1))
        return 0
    print(f"{'name':<24} {'chip':<8} {'offset':>7}  {'radio':<8} sensors")
    for b in boards.values():
        sensors = ", ".join(s["driver"] for s in b.sensors)
        print(f"{b.name:<24} {b.chip:<8} {b.flash_offset:>#7x}  {b.radio['type']:<8} {sensors}")
    return 0


def cmd_monitor(args) -> int:
    from citynode.device.flash import find_port

    port = find_port(args.port)
    end = time.monotonic() + args.seconds if args.seconds is not None else None
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    def notify(msg: str) -> None:
        sys.stderr.write(f"citynode monitor: {msg}\n")

    try:
        monitor(port, write, baud=args.baud, notify=notify,
                should_stop=(lambda: time.monotonic() >= end) if end is not None else (lambda: False))
    except KeyboardInterrupt:
        pass
    return 0

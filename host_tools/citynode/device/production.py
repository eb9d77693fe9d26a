"""Production mode seen from the host (docs/security.md, "Production mode").

A node provisioned with `citynode provision --production` keeps NVS key `prod` = 1 in namespace cn_keys, beside its
keys. Its main.py turns Ctrl-C off as its first statement, and firmware/main.py leaves it off and prints MARK on the
console at every boot (including each wake from deep sleep). Its REPL is then out of reach of mpremote, so of
`citynode flash` and `citynode provision`. This module tells that apart from a board that merely does not answer
(`closed()`), and makes sure that writing a MicroPython image erases NVS, and with it keys, LoRaWAN session and
production mode (`erase_nvs()`): that reflash, then `citynode provision`, is the way back to a usable board.
"""
from __future__ import annotations

import contextlib
import hashlib
import struct
import time
from dataclasses import dataclass

MARK = "citynode: production mode"  # the start of the line firmware/main.py prints at every boot
LISTEN_S = 5.0  # after a reset, how long to wait for MARK (a board boots into main.py in about a second)
# The partition table, where ESP-IDF and MicroPython's builds put it (CONFIG_PARTITION_TABLE_OFFSET), and the nvs
# partition of every MicroPython ESP32 layout (ports/esp32/partitions-*.csv: nvs, data, nvs, 0x9000, 0x6000).
PARTITION_TABLE = 0x8000
DEFAULT_NVS = (0x9000, 0x6000)
_ENTRY = struct.Struct("<2sBBII16sI")  # magic AA 50, type, subtype, offset, size, label, flags
_DATA, _NVS = 0x01, 0x02


def closed_message(port: str) -> str:
    """One line for a node that said it is in production mode."""
    return (f"the node on {port} is in production mode: its REPL is closed, so citynode can neither write nor "
            "check its keys; to use the board again run `citynode flash --board BOARD --port "
            f"{port}` (writing the image erases NVS: keys, session and production mode), then `citynode "
            "provision` (docs/security.md)")


def said(text) -> bool:
    """Whether node output (bytes, str, or the repr of bytes mpremote prints) holds MARK."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("latin-1")
    return MARK in text


def listen(ser, seconds: float = LISTEN_S, reset: bool = True) -> bytes:
    """Read what the board prints for up to `seconds` (less once MARK came), after resetting it if `reset`.

    The reset is the one esptool ends a flash with on a board whose USB-serial bridge drives EN through RTS
    and GPIO0 through DTR: DTR released (GPIO0 high: a normal boot), RTS asserted (EN low) for 100 ms, then
    released. Ports that have no such lines (a pty) ignore it. On a chip's own USB port (ESP32-S3) RTS resets
    nothing; this order never makes the DTR/RTS change that sends MicroPython's USB CDC to the bootloader
    (DTR set with RTS clear, right after RTS set with DTR clear)."""
    data = b""
    old = getattr(ser, "timeout", None)
    try:
        ser.timeout = 0.2
        if reset:
            with contextlib.suppress(Exception):
                ser.dtr = False
                ser.rts = True
                time.sleep(0.1)
                ser.rts = False
        end = time.monotonic() + seconds
        while time.monotonic() < end and not said(data):
            chunk = ser.read(256)
            if chunk:
                data += chunk
    except Exception:  # noqa: BLE001 (a port that went away: what came so far is the answer)
        pass
    finally:
        with contextlib.suppress(Exception):
            ser.timeout = old
    return data


def enter_raw_repl(transport, timeout: float | None = None) -> None:
    """mpremote's enter_raw_repl (no soft reset), over within about `timeout` seconds even on a board that keeps
    printing: mpremote checks its overall timeout only after a read that got nothing, so a node that prints
    every few seconds (a production node's boot line in a boot loop, a chatty app) kept it waiting for ever.
    Past the deadline every read of the port returns nothing, and mpremote gives up (TransportError).
    `timeout` None: mpremote's default (10 s)."""
    kw = {} if timeout is None else {"timeout_overall": timeout}
    ser = getattr(transport, "serial", None)
    if ser is None:
        transport.enter_raw_repl(soft_reset=False, **kw)
        return
    read = ser.read
    own = "read" in getattr(ser, "__dict__", {})  # already wrapped by someone: put that wrapper back
    deadline = time.monotonic() + (10.0 if timeout is None else timeout) + 0.5

    def bounded(*args, **kw):
        if time.monotonic() > deadline:
            time.sleep(0.01)
            return b""
        return read(*args, **kw)

    ser.read = bounded
    try:
        transport.enter_raw_repl(soft_reset=False, **kw)
    finally:
        if own:
            ser.read = read
        else:
            del ser.read  # the class's read is back


def closed(transport, printed: str = "", seconds: float = LISTEN_S) -> bool:
    """After mpremote found no raw REPL: whether the board is a node in production mode. First what it printed
    while mpremote waited (`printed`: mpremote prints the bytes it got), else what it prints after a reset."""
    if said(printed):
        return True
    ser = getattr(transport, "serial", None)
    return ser is not None and said(listen(ser, seconds))


# -- the nvs partition and a MicroPython image --------------------------------------------------------------------
def nvs_partitions(image: bytes, offset: int) -> tuple[list[tuple[int, int]], bool]:
    """The (offset, size) of every nvs data partition in the image's partition table, and True; or MicroPython's
    default nvs partition and False when the image holds no partition table at PARTITION_TABLE."""
    at = PARTITION_TABLE - offset
    found: list[tuple[int, int]] = []
    if at >= 0:
        pos, table = at, False
        while pos + _ENTRY.size <= len(image):
            magic, kind, sub, start, size, _label, _flags = _ENTRY.unpack_from(image, pos)
            if magic != b"\xaa\x50":
                break  # the MD5 entry (EB EB) or erased flash ends the table
            table = True
            if kind == _DATA and sub == _NVS:
                found.append((start, size))
            pos += _ENTRY.size
        if table:
            return found, True
    return [DEFAULT_NVS], False


@dataclass
class NvsErase:
    """What became of NVS when an image was written: each range, and how ("image": the verified image covers it;
    "erased": written with 0xFF and verified afterwards). `from_table`: the ranges come from the image's
    partition table (else MicroPython's default layout)."""

    ranges: list
    how: list
    from_table: bool

    def line(self) -> str:
        where = ", ".join(f"{s:#x}..{s + n:#x}" for s, n in self.ranges) or "none"
        if not self.ranges:
            return ("NVS: the image's partition table has no nvs partition; nothing erased (keys, if any, are "
                    "where an earlier table put them)")
        how = "covered by the verified image" if set(self.how) == {"image"} else "erased and verified"
        src = "its partition table" if self.from_table else "MicroPython's default layout"
        return (f"NVS {where} ({src}) {how}: any keys, LoRaWAN session and production mode on this board are "
                "gone; provision it again (a node whose enclosure was opened: citynode provision --replace "
                "OLD_DEV_EUI)")


def erase_nvs(esp, cmds, image: bytes, offset: int) -> NvsErase:
    """After `image` was written at `offset` and verified: every nvs partition the image does not cover is
    written with 0xFF and verified, so that no key, session or production flag survives a reflash."""
    ranges, from_table = nvs_partitions(image, offset)
    how = []
    for start, size in ranges:
        if offset <= start and start + size <= offset + len(image):
            how.append("image")
            continue
        blank = b"\xff" * size
        cmds.write_flash(esp, [(start, blank)], compress=False, no_compress=True, flash_size="keep")
        if esp.flash_md5sum(start, size) != hashlib.md5(blank).hexdigest():
            from citynode.errors import CitynodeError

            raise CitynodeError(f"erasing NVS at {start:#x} failed: the flash does not read back blank")
        how.append("erased")
    return NvsErase(ranges, how, from_table)

"""The board's serial port: finding it, bounding every wait for it, and saying what went wrong with it."""
from __future__ import annotations

import contextlib
import re
import threading
import time

from citynode.device.flash.errors import FlashError

# USB-serial bridges found on ESP32 boards: CP210x, CH340/CH9102, FTDI, Espressif native USB
USB_VIDS = {0x10C4: "CP210x", 0x1A86: "CH34x", 0x0403: "FTDI", 0x303A: "Espressif USB"}
QUIET_S = 30.0  # the longest a board may stay silent while we wait for it (a self-test needs about 10 s)


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

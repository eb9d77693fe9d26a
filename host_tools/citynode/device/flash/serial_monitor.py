"""`citynode monitor`: the board's serial log, surviving the port going away."""
from __future__ import annotations

import contextlib
import time

from citynode.device.flash.port import _port_error


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

"""Flashing speed through the simulated ESP32 ROM with the UART line rate modelled; prints JSON.

For a ~1.5 MB firmware-like image: wall time and bytes on the wire for `citynode.device.flash.write_image` (esptool's
library API) at 115200 and 460800 baud, stub and ROM-only, deflated and raw, against the serial-line floor
(bytes * 10 / baud: 8N1 start + 8 data + stop bits). The sim paces every byte in both directions at the current
baud rate (it follows CHANGE_BAUDRATE); flash erase/program time and USB latency are NOT modelled, so real boards
are slower. Usage: python bench/flash_bench.py [--quick]
"""
from __future__ import annotations

import json
import random
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host_tools"))

from citynode.device.boards import get_board  # noqa: E402
from citynode.device.flash import write_image  # noqa: E402
from citynode.sim.hwsim.esp32rom import Esp32RomSim  # noqa: E402


def firmware_like(n: int, seed: int = 1) -> bytes:
    """Code-like (incompressible) blocks mixed with tables/strings/padding, about as compressible as a
    MicroPython ESP32 image (deflate to roughly 60-65 %)."""
    rnd = random.Random(seed)
    words = [b"MicroPython", b"machine", b"OSError", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"esp32", b"lora"]
    out = bytearray(b"\x00")
    while len(out) < n:
        if rnd.random() < 0.45:
            out += rnd.randbytes(256)
        else:
            for _ in range(24):
                out += rnd.choice(words)
    return bytes(out[:n])


def run(image: bytes, baud: int, stub: bool, compress: bool, line_rate: bool = True) -> dict:
    board = get_board("ttgo-lora32-v2.1")
    with Esp32RomSim(line_rate=line_rate) as sim:
        t0 = time.monotonic()
        write_image(sim.url, board, image, baud=baud, no_stub=not stub, no_reset=True, compress=compress,
                    connect_attempts=1)
        wall = time.monotonic() - t0
        assert bytes(sim.flash[0x1000:0x1000 + len(image)]) == image
        rx, tx = sim.rx_bytes, sim.tx_bytes
    payload = len(zlib.compress(image, 9)) if compress else len(image)
    floor = payload * 10 / baud  # the data itself, nothing else, at 10 bits a byte
    wire = (rx + tx) * 10 / baud  # everything both ways (framing, headers, stub upload, replies), no gaps
    return {"baud": baud, "stub": stub, "deflate": compress, "line_rate_modelled": line_rate,
            "image_bytes": len(image), "payload_bytes": payload, "bytes_to_chip": rx, "bytes_from_chip": tx,
            "wall_s": round(wall, 2), "floor_payload_s": round(floor, 2),
            "floor_raw_image_s": round(len(image) * 10 / baud, 2), "wire_time_s": round(wire, 2),
            "wall_over_floor": round(wall / floor, 2) if line_rate else None}


def main() -> None:
    quick = "--quick" in sys.argv
    image = firmware_like(200_000 if quick else 1_536_000)
    cases = [(115200, True, True), (460800, True, True), (460800, False, True), (460800, True, False)]
    if not quick:
        cases.append((115200, False, True))
    results = [run(image, 460800, True, True, line_rate=False)]  # CPU and protocol cost alone
    results += [run(image, b, s, c) for b, s, c in cases]
    print(json.dumps({"image_bytes": len(image), "deflated_bytes": len(zlib.compress(image, 9)),
                      "runs": results}, indent=1))


if __name__ == "__main__":
    main()

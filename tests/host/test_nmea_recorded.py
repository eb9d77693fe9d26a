"""The firmware NMEA reader against GPSD's recorded receiver captures (../shared/data/nmea/*.log).

Expected counts come from a plain reference implementation written here (line split, XOR checksum, RMC status
field), not from the driver, and must equal the driver's counts for every file.
"""
from __future__ import annotations

from functools import reduce
from pathlib import Path

import pytest

from cnode.drivers.nmea import NMEA

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nmea"
TALKERS = {"GP", "GN", "GL", "GA", "BD"}


def _logs():
    return sorted(DATA.glob("*.log"))


def _ref_checksum_ok(line: str) -> bool:
    if not line.startswith("$") or len(line) < 4 or line[-3] != "*":
        return False
    body, hh = line[1:-3], line[-2:]
    if "*" in body:
        return False
    try:
        want = int(hh, 16)
    except ValueError:
        return False
    return reduce(lambda a, c: a ^ ord(c), body, 0) == want


def _reference(path: Path) -> dict:
    ref = {"checksum_ok": 0, "rmc_fix": 0, "rmc": 0}
    for raw in path.read_bytes().splitlines():
        line = raw.decode("ascii", "replace").strip()
        if not line or line.startswith("#"):
            continue
        if not _ref_checksum_ok(line):
            continue
        ref["checksum_ok"] += 1
        fields = line[1:-3].split(",")
        if fields[0][2:] == "RMC" and fields[0][:2] in TALKERS:
            ref["rmc"] += 1
            if len(fields) > 2 and fields[2] == "A":
                ref["rmc_fix"] += 1
    return ref


def _driver(data: bytes) -> NMEA:
    n = NMEA()
    n.feed(data)
    return n


@pytest.mark.recorded
def test_valid_rmc_fixes_match_reference_for_every_log():
    logs = _logs()
    assert len(logs) >= 10
    total = 0
    for path in logs:
        ref = _reference(path)
        drv = _driver(path.read_bytes())
        assert drv.sentences == ref["checksum_ok"], path.name
        assert drv.rmc == ref["rmc"], path.name
        assert drv.rmc_valid == ref["rmc_fix"], path.name
        assert drv.bad_fields == 0, path.name
        total += ref["rmc_fix"]
    assert total > 500


@pytest.mark.recorded
def test_mutated_sentence_rejected_in_every_log():
    for path in _logs():
        lines = [ln for ln in path.read_bytes().splitlines() if ln.startswith(b"$") and b"RMC," in ln[:7]]
        good = next(ln for ln in lines if _ref_checksum_ok(ln.decode()) and ln.split(b",")[2] == b"A")
        drv = _driver(good + b"\r\n")
        assert drv.rmc_valid == 1
        lat, lon = drv.lat, drv.lon
        i = good.index(b",A,") + 4  # first digit of the latitude
        bad = bytearray(good)
        bad[i] = ord("1") if bad[i] != ord("1") else ord("2")
        assert not _ref_checksum_ok(bad.decode())
        drv.feed(bytes(bad) + b"\r\n")
        assert drv.bad_checksum == 1, path.name
        assert drv.rmc_valid == 1 and (drv.lat, drv.lon) == (lat, lon), path.name


@pytest.mark.recorded
def test_byte_stream_in_small_chunks_gives_same_counts():
    path = DATA / "ublox-zed-f9p-nmea.log"
    data = path.read_bytes()
    whole = _driver(data)
    n = NMEA()
    for i in range(0, len(data), 7):
        n.feed(data[i:i + 7])
    assert (n.sentences, n.rmc_valid, n.gga, n.lat, n.lon) == \
        (whole.sentences, whole.rmc_valid, whole.gga, whole.lat, whole.lon)


@pytest.mark.recorded
def test_log_replayed_through_uart_twin_at_line_rate():
    from citynode.sim.hwsim import machine
    from citynode.sim.hwsim.clock import VirtualClock
    from citynode.sim.hwsim.twin_gps import GpsTwin

    path = DATA / "skytraq-dgps.log"
    ref = _reference(path)
    clk = VirtualClock()
    machine.use(clk)
    twin = GpsTwin(clk, log=path.read_bytes(), baud=9600)
    uart = machine.UART(1, 9600, rxbuf=512)
    uart.attach(twin)
    drv = NMEA(uart, clk, silent_ms=10**9)
    while twin.pending:
        clk.advance_ms(100)
        drv.read()
    clk.advance_ms(100)
    drv.read()
    assert uart.overruns == 0
    assert drv.rmc_valid == ref["rmc_fix"] and drv.sentences == ref["checksum_ok"]
    assert clk.monotonic_ms() >= len(path.read_bytes()) * 1000 // 960  # it took line time, not zero time

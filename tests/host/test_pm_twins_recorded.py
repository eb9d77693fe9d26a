"""UART PM drivers against twins replaying recorded sensor.community SDS011 data (Aberdeen, January 2019)."""
from __future__ import annotations

import csv
import datetime
from pathlib import Path

import pytest

from citynode.sim.hwsim import machine
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_uart_pm import (PMS5003Twin, RecordedSeries, SDS011Twin, SPS30Twin)
from cnode.drivers.errors import SensorError
from cnode.drivers.pms5003 import PMS5003
from cnode.drivers.sds011 import SDS011
from cnode.drivers.sps30 import SPS30

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sensor-community" / "2019-01-aberdeen"
DAYS = ["2019-01-01", "2019-01-02"]
MINUTE = 60000


def _files(sensor="15092"):
    return [DATA / f"{d}_sds011_sensor_{sensor}.csv" for d in DAYS]


def _rows(paths):
    """(unix seconds, P2 = PM2.5, P1 = PM10) parsed independently of the twin's helper."""
    out = []
    for p in paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f, delimiter=";"):
                if r["P1"] and r["P2"]:
                    t = datetime.datetime.fromisoformat(r["timestamp"]).replace(tzinfo=datetime.timezone.utc)
                    out.append((int(t.timestamp()), float(r["P2"]), float(r["P1"])))
    out.sort()
    return out


def _held(rows, unix_s):
    last = rows[0]
    for r in rows:
        if r[0] > unix_s:
            break
        last = r
    return last


def _x10(x):
    """0.1 ug/m3 steps, half up (as the twins quantise)."""
    return int(x * 10 + 0.5)


def _uart(clock, baud, twin):
    u = machine.UART(1, baud)
    u.attach(twin)
    return u


@pytest.mark.recorded
def test_recorded_series_matches_csv():
    rows = _rows(_files())
    s = RecordedSeries([str(p) for p in _files()])
    assert len(s.t) == len(rows) > 900
    assert s.start_s == rows[0][0]
    for i in range(0, len(rows), 37):
        t, p25, p10 = rows[i]
        v = s((t - s.start_s) * 1000 + 999)
        assert v["pm2_5"] == pytest.approx(p25, abs=0.005) and v["pm10"] == pytest.approx(p10, abs=0.005)


@pytest.mark.recorded
def test_sds011_node_cycle_over_a_recorded_day():
    """Every 5 minutes: wake 30 s before, read, sleep. Values equal the recorded ones at 0.1 ug/m3."""
    rows = _rows(_files())
    series = RecordedSeries([str(p) for p in _files()])
    clock = VirtualClock()
    machine.use(clock)
    twin = SDS011Twin(clock, series, query_mode=False, period=2)  # factory-ish state, odd period
    drv = SDS011(_uart(clock, 9600, twin), clock)
    drv.setup()
    assert twin.query_mode and twin.period == 0
    drv.sleep()
    fan0 = twin.fan_total_ms()
    n = 0
    for k in range(1, 24 * 12 + 1):
        due = k * 5 * MINUTE
        clock.sleep_ms(due - drv.warmup_ms - clock.monotonic_ms())
        drv.wake()
        clock.sleep_ms(due - clock.monotonic_ms())
        drv.read()
        drv.sleep()
        t, p25, p10 = _held(rows, series.start_s + clock.monotonic_ms() // 1000)
        assert drv.values == [_x10(p25), _x10(p10)], (k, t)
        n += 1
    assert n == 288
    duty = (twin.fan_total_ms() - fan0) / clock.monotonic_ms()
    assert 0.09 < duty < 0.11  # the fan ran 30 s in every 5 minutes, not all day
    assert twin.flash_writes == 2  # reporting mode and working period, once


@pytest.mark.recorded
def test_all_uart_pm_drivers_follow_the_record_with_faults():
    """SDS011, SPS30 and PMS5003 twins replay the same record; faults are injected every 7th reading.
    Each fault costs exactly that reading; the next one is right again."""
    rows = _rows(_files("15462"))
    series = RecordedSeries([str(p) for p in _files("15462")])
    kinds = ("checksum", "noise", "truncate", "disconnect", "garbage")
    for name in ("sds011", "sps30", "pms5003"):
        clock = VirtualClock()
        machine.use(clock)
        if name == "sds011":
            twin = SDS011Twin(clock, series, query_mode=True)
            drv = SDS011(_uart(clock, 9600, twin), clock)
            tol = 0  # 0.1 ug/m3 on the wire
        elif name == "sps30":
            twin = SPS30Twin(clock, series)
            drv = SPS30(_uart(clock, 115200, twin), clock)
            tol = 5  # whole ug/m3 on the wire (uint16 format): within half a unit
        else:
            twin = PMS5003Twin(clock, series)
            drv = PMS5003(_uart(clock, 9600, twin), clock)
            tol = 5
        drv.read()
        failed = 0
        for k in range(1, 200):
            clock.sleep_ms(2 * MINUTE)
            fault = kinds[(k // 7) % len(kinds)] if k % 7 == 0 else None
            if fault:
                twin.inject(fault)
            try:
                drv.read()
            except SensorError:
                failed += 1
                assert fault and fault != "garbage", (name, k)
                continue
            assert fault in (None, "garbage"), (name, k, fault)
            t, p25, p10 = _held(rows, series.start_s + clock.monotonic_ms() // 1000)
            i25, i10 = drv.channels.index("pm2_5"), drv.channels.index("pm10")
            assert abs(drv.values[i25] - _x10(p25)) <= tol, (name, k)
            assert abs(drv.values[i10] - _x10(p10)) <= tol, (name, k)
        assert failed == sum(1 for k in range(1, 200) if k % 7 == 0 and kinds[(k // 7) % 5] != "garbage")


@pytest.mark.recorded
def test_typed_vectors_equal_the_shared_file():
    """The firmware tests type the shared vectors in (they also run where ../data is absent): no typos."""
    import json

    import test_drv_sds011
    import test_drv_sps30
    vec = json.loads((DATA.parents[1] / "driver-vectors" / "vectors.json").read_text())
    sds = vec["sds011_frames"]
    assert [(v["bytes"], v["pm25"], v["pm10"], int(v["device_id"], 16)) for v in sds["valid"]] == \
        list(test_drv_sds011.VALID)
    assert [v["bytes"] for v in sds["invalid"]] == [f for f, _ in test_drv_sds011.INVALID]
    assert [v["why"] for v in sds["invalid"]] == ["bad checksum", "bad header byte"]
    sps = vec["sps30_shdlc"]
    assert sps["response_start_measurement_ok"] == test_drv_sps30.START_OK
    assert sps["response_device_info_serial_zeros"] == test_drv_sps30.SERIAL_ZEROS

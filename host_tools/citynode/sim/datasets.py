"""Recorded series: sensor.community archive CSVs and counter CSVs, read and put on a regular grid."""
from __future__ import annotations

import csv
import glob
import os
from bisect import bisect_right
from datetime import datetime, timezone

# sensor.community archive columns -> registry channel names, per sensor type
SC_COLUMNS = {
    "sds011": {"P1": "pm10", "P2": "pm2_5"},
    "bme280": {"temperature": "temperature", "humidity": "humidity", "pressure": "pressure"},
    "dht22": {"temperature": "temperature", "humidity": "humidity"},
}


def _unix(ts: str) -> int:
    return int(datetime.fromisoformat(ts).replace(tzinfo=timezone.utc).timestamp())


def sensor_type(path: str) -> str:
    name = os.path.basename(path).lower()
    for kind in SC_COLUMNS:
        if f"_{kind}_" in name:
            return kind
    raise ValueError(f"{path}: not a sensor.community archive file (*_sds011_*, *_bme280_*, *_dht22_*)")


def read_sensor_community(paths) -> list[tuple[int, dict]]:
    """Rows (unix time, {channel: value}) from archive CSVs of one sensor type, sorted by time."""
    rows: list[tuple[int, dict]] = []
    for path in paths:
        cols = SC_COLUMNS[sensor_type(path)]
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh, delimiter=";"):
                vals = {}
                for col, ch in cols.items():
                    raw = (r.get(col) or "").strip()
                    if raw:
                        vals[ch] = float(raw)
                if vals:
                    rows.append((_unix(r["timestamp"]), vals))
    rows.sort(key=lambda x: x[0])
    return rows


def read_counter_csv(path) -> list[tuple[int, dict]]:
    """Counter CSV with header `time,<channel>` (ISO time): rows (unix time, {channel: count})."""
    with open(path, newline="") as fh:
        rd = csv.reader(fh)
        header = next(rd)
        if len(header) != 2 or header[0] != "time":
            raise ValueError(f"{path}: expected a header 'time,<channel>'")
        ch = header[1]
        rows = [(_unix(t), {ch: float(v)}) for t, v in rd if v.strip()]
    rows.sort(key=lambda x: x[0])
    return rows


class Held:
    """Sample-and-hold over a sorted series: the value current at time t (None when older than max_age)."""

    def __init__(self, rows, max_age: int = 1800):
        self.t = [r[0] for r in rows]
        self.v = [r[1] for r in rows]
        self.max_age = max_age

    def at(self, t: int) -> dict:
        i = bisect_right(self.t, t) - 1
        if i < 0 or t - self.t[i] > self.max_age:
            return {}
        return self.v[i]


def grid(series: list[list[tuple[int, dict]]], step: int = 300, channels=None, max_age: int = 1800):
    """Samples on a regular grid from several series (sample-and-hold), from their common start to end."""
    held = [Held(s, max_age) for s in series if s]
    if not held:
        return []
    t0 = max(h.t[0] for h in held)
    t1 = min(h.t[-1] for h in held)
    t = t0 - t0 % step + step
    out = []
    while t <= t1:
        vals: dict = {}
        for h in held:
            vals.update(h.at(t))
        if channels is not None:
            vals = {c: vals.get(c) for c in channels}
        out.append({"t": t, "values": vals})
        t += step
    return out


def aberdeen_january(data_dir, step: int = 300):
    """The benchmark series: SDS011 15092 paired with BME280 15093 (January 2019), 5 values per sample."""
    d = os.path.join(data_dir, "sensor-community", "2019-01-aberdeen")
    sds = read_sensor_community(sorted(glob.glob(os.path.join(d, "*_sds011_sensor_15092.csv"))))
    bme = read_sensor_community(sorted(glob.glob(os.path.join(d, "*_bme280_sensor_15093.csv"))))
    return grid([sds, bme], step, ("pm10", "pm2_5", "temperature", "humidity", "pressure"))

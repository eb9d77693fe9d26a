"""Uplink airtime per day by EU868 data rate for a node sending 5-value samples every 5 minutes, samples
packed into frames up to each DR's payload limit with the project's encoder; and the fastest sampling
interval that keeps within TTN's fair-use 30 s of uplink airtime per day. Prints a table, then one JSON line.

Time on air from the firmware's cnode.lorawan.region.airtime_us (AN1200.13, CR 4/5, 8-symbol preamble,
explicit header, CRC on), PHY = application payload + 13 B (MHDR, FHDR without FOpts, FPort, MIC)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

from citynode.payload.frame import encode  # noqa: E402
from cnode.lorawan.region import DR_SF, MAX_PAYLOAD, dr_airtime_us  # noqa: E402

STEP_S = 300
TTN_S_PER_DAY = 30.0
OVERHEAD = 13


def recorded():
    try:
        from citynode.sim.datasets import aberdeen_january

        if (DATA / "sensor-community").is_dir():
            s = aberdeen_january(str(DATA), STEP_S)
            if s:
                return s, "recorded: sensor.community Aberdeen 2019-01 (SDS011 15092 + BME280 15093)"
    except Exception as e:  # noqa: BLE001 - fall back to synthetic data, and say so
        print("recorded data unavailable (%s); using synthetic" % e, file=sys.stderr)
    return synthetic(), "synthetic random walk"


def synthetic(days=7):
    x = 12345
    v = {"pm10": 14.0, "pm2_5": 8.0, "temperature": 4.0, "humidity": 85.0, "pressure": 101300.0}
    step = {"pm10": 0.6, "pm2_5": 0.4, "temperature": 0.08, "humidity": 0.4, "pressure": 6.0}
    out = []
    t0 = 1546300800  # 2019-01-01
    for i in range(days * 86400 // STEP_S):
        for k in v:
            x = (1103515245 * x + 12345) & 0x7FFFFFFF
            v[k] = max(0.0, v[k] + step[k] * ((x % 2001) - 1000) / 1000)
        out.append({"t": t0 + i * STEP_S, "values": {k: round(v[k], 2) for k in v}})
    return out


def main():
    samples, source = recorded()
    days = len(samples) * STEP_S / 86400
    rows = []
    for dr in range(6):
        limit = MAX_PAYLOAD[dr]
        frames = encode(samples, limit)
        air_us = sum(dr_airtime_us(dr, len(f) + OVERHEAD) for f in frames)
        per_day_s = air_us / 1e6 / days
        frames_day = len(frames) / days
        spf = len(samples) / len(frames)  # samples per frame
        mean_frame_s = air_us / 1e6 / len(frames)
        # fastest interval: frames/day allowed = 30 s / mean frame airtime; samples/day = that x samples/frame
        fastest_s = 86400 / (TTN_S_PER_DAY / mean_frame_s * spf)
        rows.append({"dr": dr, "sf": DR_SF[dr], "limit_bytes": limit, "frames_per_day": round(frames_day, 1),
                     "samples_per_frame": round(spf, 2),
                     "bytes_per_sample": round(sum(len(f) for f in frames) / len(samples), 2),
                     "mean_frame_airtime_ms": round(mean_frame_s * 1000, 1),
                     "airtime_s_per_day": round(per_day_s, 2),
                     "ttn_ok_at_5min": per_day_s <= TTN_S_PER_DAY,
                     "fastest_interval_s_ttn": math.ceil(fastest_s)})
    print("uplink airtime per day, 5 values every %d s, %s, %.1f days, PHY = payload + %d B"
          % (STEP_S, source, days, OVERHEAD))
    print("%-4s %-5s %6s %9s %9s %8s %10s %10s %14s" % ("DR", "SF", "limit", "frames/d", "samp/frm", "B/samp",
                                                       "ms/frame", "s/day", "fastest (TTN)"))
    for r in rows:
        print("DR%-2d SF%-3d %6d %9.1f %9.2f %8.2f %10.1f %10.2f %12d s" % (
            r["dr"], r["sf"], r["limit_bytes"], r["frames_per_day"], r["samples_per_frame"],
            r["bytes_per_sample"], r["mean_frame_airtime_ms"], r["airtime_s_per_day"],
            r["fastest_interval_s_ttn"]))
    print("fastest interval: the smallest sampling interval whose packed frames stay within %.0f s/day, "
          "assuming the samples per frame measured at %d s (shorter intervals give smaller deltas, so this "
          "is conservative)" % (TTN_S_PER_DAY, STEP_S))
    print(json.dumps({"benchmark": "airtime", "source": source, "interval_s": STEP_S, "days": round(days, 2),
                      "ttn_budget_s_per_day": TTN_S_PER_DAY, "results": rows}))


main()

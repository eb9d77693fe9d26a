"""Writes tests/vectors/payload.json: samples <-> exact frame bytes, the contract every implementation meets.

Run after a deliberate format change only (python tests/vectors/gen_payload.py); the encoder under CPython
and MicroPython, the host decoder and the generated JavaScript codec are all tested against the file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "firmware"), str(ROOT / "host_tools")]

from citynode.payload.frame import channel_set, encode, to_ints  # noqa: E402

T = 1546300800  # 2019-01-01T00:00:00Z


def env(i, **over):
    v = {"pm10": 9.4 + (i % 3) * 0.7, "pm2_5": 3.3 + (i % 2) * 0.2, "temperature": 8.57 - 0.03 * i,
         "humidity": 64.8 + 0.1 * i, "pressure": 102623 - 2 * i}
    v.update(over)
    return v


CASES = {
    "single_env_sample": ([{"t": T + 44, "values": env(0)}], 222),
    "regular_6_samples_dr0": ([{"t": T + 300 * i, "values": env(i)} for i in range(6)], 51),
    "irregular_times": ([{"t": T + t, "values": {"pm10": 12.0 + i, "pm2_5": 4.0}}
                         for i, t in enumerate((0, 166, 333, 500, 680, 1000))], 222),
    "missing_values": ([{"t": T + 300 * i, "values": env(i, temperature=None if i in (2, 3) else 8.5 - i / 100,
                                                          pressure=None if i == 0 else 101300 + i)}
                        for i in range(5)], 222),
    "quality_flags": ([{"t": T + 300 * i, "values": env(i, pm10=None if i == 0 else 20.0),
                        "flags": ({"pm10": ["missing"], "pm2_5": ["warming_up"]} if i == 0 else
                                  {"pm10": ["humid"]} if i == 3 else {})}
                       for i in range(4)], 222),
    "rice_escape_spike": ([{"t": T + 300 * i, "values": {"pm10": (5.0, 900.0, 6.2, 6.0)[i]}}
                           for i in range(4)], 51),
    "frost_and_negative": ([{"t": T + 600 * i, "values": {"temperature": -12.5 + 0.25 * i, "humidity": 99.9}}
                            for i in range(5)], 51),
    "node_status": ([{"t": T + 3600, "values": {"battery": 3.912, "reboot_reason": 4, "fw_version": 10200,
                                                 "queue_depth": 3, "dropped": 0}}], 51),
    "gps_position": ([{"t": T + 60 * i, "values": {"latitude": 52.27264 + 0.0001 * i,
                                                   "longitude": 8.04793 - 0.0002 * i}} for i in range(3)], 51),
    "mobility_counts": ([{"t": T + 900 * i, "values": {"pedestrians": (0, 3, 17, 45, 120, 88)[i],
                                                       "bikes": (0, 1, 4, 12, 30, 22)[i],
                                                       "occupancy": (12, 14, 20, 45, 80, 95)[i]}}
                         for i in range(6)], 51),
    "split_one_sample_across_frames": ([{"t": T, "values": {
        "temperature": 21.37, "humidity": 45.1, "pressure": 98765, "pm1": 7.1, "pm2_5": 8.2, "pm10": 9.3,
        "co2": 1234, "noise_laeq": 61.4, "noise_lamax": 80.2, "latitude": 52.27264, "longitude": 8.04793,
        "battery": 3.701, "pedestrians": 1234, "bikes": 567, "vehicles": 89, "occupancy": 77,
        "distance": 1.234}}], 32),
}


def main():
    out = []
    for name, (samples, limit) in CASES.items():
        chans = channel_set(samples)
        ints = [to_ints(s, chans) for s in samples]
        frames = encode(samples, limit)
        out.append({"name": name, "limit": limit, "samples": samples,
                    "ids": [c.id for c in chans], "refs": [c.ref for c in chans],
                    "ints": [[t, v, f] for t, v, f in ints],
                    "frames": [f.hex() for f in frames]})
    path = ROOT / "tests" / "vectors" / "payload.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{path}: {len(out)} vectors, {sum(len(v['frames']) for v in out)} frames")


if __name__ == "__main__":
    main()

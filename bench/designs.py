"""Payload designs we measured before choosing one (docs/payload.md): encoders for the comparison only."""
from __future__ import annotations

import json
import lzma

import cbor2
from cayennelpp import LppFrame

from citynode.payload.channels import BY_NAME, EPOCH_2000

NAMES = ("pm10", "pm2_5", "temperature", "humidity", "pressure")


def _ints(s):
    return [None if s["values"].get(n) is None else BY_NAME[n].to_raw(s["values"][n]) for n in NAMES]


def delta_map(samples) -> bytes:
    """Design A: plain CBOR map {"t": [t0, dt], id: [first, delta, ...]} (nulls as CBOR null)."""
    t0 = samples[0]["t"] - EPOCH_2000
    dt = samples[1]["t"] - samples[0]["t"] if len(samples) > 1 else 0
    m: dict = {"t": [t0, dt]}
    rows = [_ints(s) for s in samples]
    for c, name in enumerate(NAMES):
        prev, arr = None, []
        for r in rows:
            v = r[c]
            if v is None:
                arr.append(None)
                continue
            arr.append(v if prev is None else v - prev)
            prev = v
        m[BY_NAME[name].id] = arr
    return cbor2.dumps(m)


def _varint(z: int, out: bytearray):
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def varint_stream(samples) -> bytes:
    """Design B: CBOR [1, mask, t0, dt, bytes]; bytes = zigzag LEB128 of first values and deltas per channel
    (a null costs one byte: 0 with a presence byte per 8 samples)."""
    t0 = samples[0]["t"] - EPOCH_2000
    dt = samples[1]["t"] - samples[0]["t"] if len(samples) > 1 else 0
    rows = [_ints(s) for s in samples]
    out = bytearray()
    mask = 0
    for c, name in enumerate(NAMES):
        ch = BY_NAME[name]
        mask |= 1 << ch.id
        pres = 0
        for i, r in enumerate(rows):
            if r[c] is not None:
                pres |= 1 << i
        if pres != (1 << len(rows)) - 1:
            out += pres.to_bytes((len(rows) + 7) // 8, "little")
        prev = ch.ref
        for r in rows:
            if r[c] is None:
                continue
            d = r[c] - prev
            _varint((d << 1) if d >= 0 else ((-d) << 1) - 1, out)
            prev = r[c]
    return cbor2.dumps([1, mask, t0, dt, bytes(out)])


def pack_greedy(samples, encoder, limit):
    """Largest prefix that fits, frame after frame (binary search: size grows with the prefix)."""
    frames, i = [], 0
    while i < len(samples):
        lo, hi = 1, min(len(samples) - i, 400)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(encoder(samples[i:i + mid])) <= limit:
                lo = mid
            else:
                hi = mid - 1
        frames.append(encoder(samples[i:i + lo]))
        i += lo
    return frames


def cayenne(sample) -> bytes:
    """CayenneLPP, one frame per sample: PM as analog inputs (0.01 steps, at most 327.67)."""
    v = sample["values"]
    f = LppFrame()
    if v.get("pm10") is not None:
        f.add_analog_input(1, min(v["pm10"], 327.67))
    if v.get("pm2_5") is not None:
        f.add_analog_input(2, min(v["pm2_5"], 327.67))
    if v.get("temperature") is not None:
        f.add_temperature(3, v["temperature"])
    if v.get("humidity") is not None:
        f.add_humidity(4, v["humidity"])
    if v.get("pressure") is not None:
        f.add_barometer(5, v["pressure"] / 100.0)
    return bytes(f)


def airrohr_json(sample) -> bytes:
    """The JSON document airRohr firmware posts to the sensor.community API for one measurement."""
    v = sample["values"]
    names = {"pm10": "SDS_P1", "pm2_5": "SDS_P2", "temperature": "BME280_temperature",
             "humidity": "BME280_humidity", "pressure": "BME280_pressure"}
    vals = [{"value_type": names[n], "value": f"{v[n]:.2f}"} for n in NAMES if v.get(n) is not None]
    doc = {"esp8266id": "3654427", "software_version": "NRZ-2018-123B", "sensordatavalues": vals}
    return json.dumps(doc).encode()


def senml_cbor_names(sample) -> bytes:
    """SenML-CBOR (RFC 8428) with full names, units and float values, one pack per sample."""
    v = sample["values"]
    recs = []
    for n in NAMES:
        if v.get(n) is None:
            continue
        rec = {0: n, 1: BY_NAME[n].unit, 2: float(v[n])}
        if not recs:
            rec = {-2: "urn:dev:mac:240ac40000a1:", -3: sample["t"], **rec}
        recs.append(rec)
    return cbor2.dumps(recs, canonical=True)


def lzma_month(samples) -> bytes:
    """Everything at once: the month's per-channel deltas, lzma-compressed (a floor no radio frame reaches)."""
    rows = [_ints(s) for s in samples]
    out = bytearray()
    for c in range(len(NAMES)):
        prev = 0
        for r in rows:
            v = prev if r[c] is None else r[c]
            _varint(((v - prev) << 1) if v >= prev else ((prev - v) << 1) - 1, out)
            prev = v
    t = bytearray()
    for a, b in zip(samples, samples[1:]):
        _varint(b["t"] - a["t"], t)
    return lzma.compress(bytes(out) + bytes(t), preset=9 | lzma.PRESET_EXTREME)

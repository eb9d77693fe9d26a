"""Host side of the payload format: decode frames (cbor2 for the CBOR, our bit reader for the stream)
and encode samples through the firmware's own encoder."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import cbor2

from cnode.bits import QMAX
from cnode.encoder import Encoder, pack

from cnode.channels import HUMID_PM

from citynode.payload.channels import BY_ID, CHANNELS, EPOCH_2000, FLAG_NAMES, VERSION, Channel, channel, flag_bits, flag_names

FPORT = 2
V_LIMIT = 1 << 31  # raw values lie in [-2**31, 2**31) (int32 on the node); the JS codec relies on this bound
T_LIMIT = 1 << 32  # sample times lie below 2**32 s after 2000 (the width of t0); the JS codec relies on it too
DR_LIMITS = (51, 51, 51, 115, 222, 222)  # EU868 max application payload by DR0..DR5


class PayloadError(ValueError):
    """A frame that is not a valid citynode payload; the message says why."""


class UnknownChannelWarning(UserWarning):
    pass


@dataclass
class Sample:
    t: int  # Unix seconds
    values: dict[str, float | int | None]
    flags: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        d: dict = {"t": self.t, "values": self.values}
        if self.flags:
            d["flags"] = self.flags
        return d


class _Bits:
    """MSB-first reader over a bytes object, via its binary-digit string (str.find does the unary runs)."""

    __slots__ = ("s", "pos", "end")

    def __init__(self, data: bytes):
        self.s = bin(int.from_bytes(data, "big") | (1 << (8 * len(data))))[3:] if data else ""
        self.pos = 0
        self.end = len(self.s)

    def read(self, n: int) -> int:
        p = self.pos
        e = p + n
        if e > self.end:
            raise PayloadError("truncated bit stream")
        self.pos = e
        return int(self.s[p:e], 2) if n else 0

    def ones(self, limit: int) -> int:
        """Count ones up to `limit`; consumes the terminating zero if it comes first."""
        p = self.pos
        z = self.s.find("0", p, p + limit)
        if z < 0:
            if p + limit > self.end:
                raise PayloadError("truncated bit stream")
            self.pos = p + limit
            return limit
        self.pos = z + 1
        return z - p

    def eg(self, k: int) -> int:
        p = self.pos
        z = self.s.find("1", p)
        if z < 0:
            raise PayloadError("truncated bit stream")
        lead = z - p
        if lead > 40:
            raise PayloadError("Exp-Golomb code too long")
        self.pos = z
        return self.read(lead + k + 1) - (1 << k)

    def rice(self, k: int) -> int:
        q = self.ones(QMAX)
        if q < QMAX:
            return (q << k) | self.read(k)
        return (QMAX << k) + self.eg(k)

    def len5(self) -> int:
        n = self.read(5)
        return ((1 << (n - 1)) | self.read(n - 1)) if n else 0


def _rice_run(b: _Bits, k: int, count: int, v: int, out: list) -> None:
    """Append `count` values, each the previous plus an unzigzagged rice_k code (the hot loop, inlined)."""
    s, pos, end = b.s, b.pos, b.end
    find = s.find
    for _ in range(count):
        z = find("0", pos, pos + QMAX)
        if z < 0:  # escape (or truncation): the general path
            b.pos = pos
            d = b.rice(k)
            pos = b.pos
        else:
            d = (z - pos) << k
            pos = z + 1 + k
            if k:
                if pos > end:
                    raise PayloadError("truncated bit stream")
                d |= int(s[z + 1:pos], 2)
        v += (d >> 1) ^ -(d & 1)
        out.append(v)
    if pos > end:
        raise PayloadError("truncated bit stream")
    b.pos = pos


def _unzig(z: int) -> int:
    return (z >> 1) ^ -(z & 1)


def decode_frame(data: bytes) -> tuple[list[Sample], list[str]]:
    """Decode one frame. Returns (samples, warnings); raises PayloadError for anything malformed. The steps
    mirror the encoder's (firmware/cnode/encoder.py): the CBOR envelope, the time header, one block per channel
    in the mask, the end of the stream, then the flags."""
    mask, stream, flat = _envelope(data)
    b = _Bits(stream)
    times = _read_times(b)
    n = len(times)
    warn: list[str] = []
    rows: list[dict] = [{} for _ in range(n)]
    cid = 0
    m = mask
    while m:
        if m & 1:
            _read_block(b, cid, rows, warn)
        m >>= 1
        cid += 1
    if b.end - b.pos >= 8 or b.s.find("1", b.pos) >= 0:
        raise PayloadError("trailing data after the sample stream")
    samples = [Sample(times[i], rows[i]) for i in range(n)]
    _apply_flags(flat, samples, warn)
    for smp in samples:
        _derive_humid(smp)
    return samples, warn


def _envelope(data: bytes) -> tuple[int, bytes, list]:
    """The CBOR array [version, mask, stream, flags?], checked: (mask, stream, flat flag triples)."""
    if not data:
        raise PayloadError("empty payload")
    try:
        obj = cbor2.loads(data)
    except cbor2.CBORDecodeError as e:
        raise PayloadError(f"not CBOR: {e}") from None
    except Exception as e:  # cbor2 raises a few others for odd input (e.g. huge tags)
        raise PayloadError(f"not CBOR: {e}") from None
    if not isinstance(obj, list) or len(obj) not in (3, 4):
        raise PayloadError("not a citynode frame (expected a CBOR array of 3 or 4 items)")
    ver, mask, stream = obj[0], obj[1], obj[2]
    if type(ver) is not int or ver != VERSION:  # not True, 1.0 or simple(1), which compare equal to 1
        raise PayloadError(f"unsupported payload version {ver!r} (this decoder reads {VERSION})")
    # mask 0: a frame whose samples have no values (every reading failed, or none was due): times and flags only
    if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask < (1 << 64):
        raise PayloadError("bad channel mask")
    if not isinstance(stream, bytes):
        raise PayloadError("bad sample stream (expected a byte string)")
    flat = obj[3] if len(obj) == 4 else []
    if not isinstance(flat, list) or len(flat) % 3 or not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in flat):
        raise PayloadError("bad quality flags (expected a flat array of unsigned triples)")
    return mask, stream, flat


def _read_times(b: "_Bits") -> list[int]:
    """The time header (the encoder's _put_time): t0, the count, then a regular step or Rice-coded steps."""
    t0 = b.read(32) + EPOCH_2000
    n = b.eg(0) + 1
    if n > 255:
        raise PayloadError(f"implausible sample count {n}")
    times = [t0]
    if n > 1:
        if b.read(1):
            dt = b.eg(6)
            times = [t0 + i * dt for i in range(n)]
        else:
            k = b.read(4)
            t = t0
            for _ in range(n - 1):
                t += b.rice(k)
                times.append(t)
        if times[-1] - EPOCH_2000 >= T_LIMIT:
            raise PayloadError("sample time out of range")
    return times


def _read_block(b: "_Bits", cid: int, rows: list[dict], warn: list[str]) -> None:
    """One channel's block (the encoder's _put_block): presence, the first value from the channel's reference,
    Rice-coded steps; the values go into rows by sample, converted to the channel's unit."""
    n = len(rows)
    ch = BY_ID.get(cid)
    present = [True] * n
    if n > 1 and not b.read(1):
        present = [bool(b.read(1)) for _ in range(n)]
    idx = [i for i in range(n) if present[i]]
    if not idx:
        raise PayloadError(f"channel {cid} has no values")
    v = _unzig(b.len5()) + (ch.ref if ch else 0)
    vals = [v]
    if len(idx) > 1:
        _rice_run(b, b.read(4), len(idx) - 1, v, vals)
    if max(vals) >= V_LIMIT or min(vals) < -V_LIMIT:
        raise PayloadError(f"value of channel {cid} out of range")
    if ch is None:
        warn.append(f"unknown channel {cid} skipped")
        return
    name = ch.name
    if ch.exp < 0:
        div = 10 ** -ch.exp
        for i, raw in zip(idx, vals):
            rows[i][name] = raw / div
    else:
        for i, raw in zip(idx, vals):
            rows[i][name] = ch.from_raw(raw)


def _apply_flags(flat: list, samples: list[Sample], warn: list[str]) -> None:
    """The flag triples (sample index, channel id, flag bits) onto the samples (the encoder's _put_flags)."""
    n = len(samples)
    for j in range(0, len(flat), 3):
        i, c, f = flat[j], flat[j + 1], flat[j + 2]
        if i >= n:
            raise PayloadError(f"quality flag for sample {i} of {n}")
        ch = BY_ID.get(c)
        if ch is None:
            warn.append(f"flags of unknown channel {c} skipped")
            continue
        samples[i].flags[ch.name] = flag_names(f)
        samples[i].values.setdefault(ch.name, None)


_PM = ("pm1", "pm2_5", "pm10")
_HUMID_LIMIT = HUMID_PM / 10  # %RH


def _derive_humid(smp: Sample) -> None:
    """The 'humid' flag is never sent: a PM reading in a sample whose humidity is above the limit gets it."""
    values = smp.values
    rh = values.get("humidity")
    if rh is None or rh <= _HUMID_LIMIT:
        return
    flags = smp.flags
    for name in _PM:
        if values.get(name) is not None:
            have = flags.get(name)
            if not have:
                flags[name] = ["humid"]
            elif "humid" not in have:
                known = [n for n in FLAG_NAMES if n in have or n == "humid"]
                flags[name] = known + [n for n in have if n not in FLAG_NAMES]


# --- encoding through the firmware encoder ------------------------------------------------------------


def channel_set(samples) -> list[Channel]:
    """The registry channels named anywhere in `samples` (dicts as in the JSON-lines format), by id."""
    names: set[str] = set()
    for s in samples:
        names.update(s.get("values", {}))
        names.update(s.get("flags", {}) or {})
    return sorted((channel(n) for n in names), key=lambda c: c.id)


def to_ints(sample: dict, chans: list[Channel]) -> tuple[int, list, list | None]:
    """A JSON-lines sample -> (t since 2000, raw ints or None per channel, flag bits or None)."""
    t = sample.get("t")
    if not isinstance(t, int) or isinstance(t, bool) or not EPOCH_2000 <= t <= EPOCH_2000 + 0xFFFFFFFF:
        raise ValueError(f"bad sample time {str(t)[:40]} (Unix seconds from 2000 to 2136)")
    values = sample.get("values")
    if not isinstance(values, dict):
        raise ValueError("sample has no 'values' object")
    vals: list = []
    for c in chans:
        v = values.get(c.name)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)
                              or abs(v) > 1e15):
            raise ValueError(f"bad value for {c.name}: {str(v)[:40]} (a finite number within the channel's range)")
        vals.append(None if v is None else c.to_raw(v))
    fl = sample.get("flags") or {}
    flags = [flag_bits(fl.get(c.name, ())) for c in chans] if fl else None
    return t - EPOCH_2000, vals, flags


def encode(samples: list[dict], limit: int = 222) -> list[bytes]:
    """Encode JSON-lines samples into frames of at most `limit` bytes with the firmware encoder."""
    chans = channel_set(samples)
    if not chans:
        raise ValueError("no values to encode")
    enc = Encoder([c.id for c in chans], [c.ref for c in chans])
    frames: list[bytes] = []
    pack(enc, (to_ints(s, chans) for s in samples), limit, lambda buf, n: frames.append(bytes(buf[:n])))
    return frames


__all__ = ["CHANNELS", "DR_LIMITS", "FPORT", "PayloadError", "Sample", "decode_frame", "encode",
           "UnknownChannelWarning", "warnings"]

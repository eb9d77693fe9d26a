"""The decode pipeline: uplinks in, samples out, with duplicates (same device and sample time) dropped."""
from __future__ import annotations

from dataclasses import dataclass, field

from citynode.payload.frame import FPORT, PayloadError, decode_frame
from citynode.payload.uplink import Uplink


@dataclass
class Stats:
    frames: int = 0
    samples: int = 0
    duplicates: int = 0
    errors: int = 0
    fcnt_resets: int = 0


@dataclass
class Deduplicator:
    """Keeps the values already delivered per (device, time); a re-sent frame adds nothing new."""

    seen: dict = field(default_factory=dict)
    last_fcnt: dict = field(default_factory=dict)
    limit: int = 200_000

    def fresh(self, device: str | None, sample: dict) -> dict | None:
        key = (device, sample["t"])
        old = self.seen.get(key)
        if old is None:
            if len(self.seen) >= self.limit:  # bounded memory for long runs: forget the oldest
                self.seen.pop(next(iter(self.seen)))
            self.seen[key] = set(sample["values"])
            return sample
        new = {k: v for k, v in sample["values"].items() if k not in old}
        if not new:
            return None
        old.update(new)
        out = dict(sample, values=new)
        if "flags" in sample:
            out["flags"] = {k: v for k, v in sample["flags"].items() if k in new}
            if not out["flags"]:
                del out["flags"]
        return out

    def fcnt_reset(self, device: str | None, fcnt: int | None) -> bool:
        """True when a device's frame counter went backwards (rejoin or reboot without persisted FCnt)."""
        if device is None or fcnt is None:
            return False
        last = self.last_fcnt.get(device)
        self.last_fcnt[device] = fcnt
        return last is not None and fcnt < last


def decode_uplink(up: Uplink, dedup: Deduplicator | None, stats: Stats) -> tuple[list[dict], list[str]]:
    """Decode one uplink into sample dicts; raises PayloadError for a bad payload."""
    if up.fport is not None and up.fport != FPORT:
        raise PayloadError(f"FPort {up.fport} is not the citynode data port {FPORT}")
    samples, warns = decode_frame(up.payload)
    stats.frames += 1
    if dedup is not None and dedup.fcnt_reset(up.device, up.fcnt):
        stats.fcnt_resets += 1
        warns = warns + [f"frame counter reset on device {up.device} (now {up.fcnt})"]
    out = []
    for s in samples:
        d = s.as_dict()
        if up.device:
            d["device"] = up.device
        if dedup is not None:
            fresh = dedup.fresh(up.device, d)
            if fresh is None:
                stats.duplicates += 1
                continue
            d = fresh
        out.append(d)
    stats.samples += len(out)
    return out, warns

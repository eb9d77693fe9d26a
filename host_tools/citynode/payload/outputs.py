"""Writing decoded samples: JSON lines, SenML (RFC 8428) as JSON or CBOR, and long-format CSV."""
from __future__ import annotations

import csv
import json
from typing import BinaryIO

import cbor2

from citynode.payload.channels import BY_NAME

FORMATS = ("jsonl", "senml-json", "senml-cbor", "csv")
_CSV_HEADER = ("t", "device", "channel", "value", "unit", "flags")


def cell(text: str) -> str:
    """A text cell a spreadsheet will not run: one that starts like a formula (=, +, -, @, tab, CR) gets a
    leading apostrophe (OWASP's advice for CSV injection). Numbers are written as numbers, never through here."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def base_name(device: str | None) -> str:
    return f"urn:dev:deveui:{device}:" if device else "urn:dev:citynode:"


def senml_pack(samples: list[dict], device: str | None = None) -> list[dict]:
    """One SenML pack for a run of samples: base name per device, base time = first sample's time."""
    if not samples:
        return []
    bt = samples[0]["t"]
    recs: list[dict] = []
    for s in samples:
        for name, v in s["values"].items():
            if v is None:
                continue
            rec: dict = {"n": name, "u": BY_NAME[name].unit, "v": v}
            if not rec["u"]:  # enumerations (reboot_reason, fw_version) have no SenML unit
                del rec["u"]
            if s["t"] != bt:
                rec["t"] = s["t"] - bt
            recs.append(rec)
    if recs:
        recs[0] = {"bn": base_name(device), "bt": bt, **recs[0]}
    return recs


_SENML_CBOR_LABELS = {"bn": -2, "bt": -3, "n": 0, "u": 1, "v": 2, "t": 6}


def senml_cbor(pack: list[dict]) -> bytes:
    return cbor2.dumps([{_SENML_CBOR_LABELS[k]: v for k, v in rec.items()} for rec in pack])


class Writer:
    """Writes samples to a text or binary stream in one of FORMATS."""

    def __init__(self, fmt: str, out, binary_out: BinaryIO | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.fmt = fmt
        self.out = out
        self.bout = binary_out
        self._csv = None
        if fmt == "csv":
            self._csv = csv.writer(out, lineterminator="\n")
            self._csv.writerow(_CSV_HEADER)

    def write(self, samples: list[dict], device: str | None = None) -> None:
        if not samples:
            return
        if self.fmt == "jsonl":
            for s in samples:
                self.out.write(json.dumps(s, separators=(", ", ": ")) + "\n")
        elif self.fmt == "senml-json":
            pack = senml_pack(samples, device)
            if pack:
                self.out.write(json.dumps(pack) + "\n")
        elif self.fmt == "senml-cbor":
            pack = senml_pack(samples, device)
            if pack:
                assert self.bout is not None  # senml-cbor is written to the binary stream (stdout's buffer)
                self.bout.write(senml_cbor(pack))
        else:
            assert self._csv is not None
            for s in samples:
                flags = s.get("flags", {})
                for name, v in s["values"].items():
                    self._csv.writerow((s["t"], cell(s.get("device", device or "")), name, "" if v is None else v,
                                        BY_NAME[name].unit, cell("|".join(flags.get(name, ())))))

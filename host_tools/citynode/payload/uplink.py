"""Reading uplinks from the formats people hand us: encode's own lines, bare hex or base64, The Things
Stack v3 uplink messages and ChirpStack v4 up events."""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass


class UplinkError(ValueError):
    pass


@dataclass
class Uplink:
    payload: bytes
    fport: int | None = None
    device: str | None = None  # DevEUI (lower-case hex) or device id
    fcnt: int | None = None
    received: str | None = None  # ISO time at the network server
    session: str | None = None  # the network server's id of the device's session (a re-join starts a new one)
    gateways: int | None = None  # gateways that received it
    rssi: float | None = None  # best gateway's, dBm
    snr: float | None = None  # best gateway's, dB


def _hex_or_b64(s: str) -> bytes:
    s = s.strip()
    if not s:
        raise UplinkError("empty line")
    try:
        return bytes.fromhex(s)
    except ValueError:
        pass
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise UplinkError("neither hex nor base64") from None


def _b64(s, what: str) -> bytes:
    if not isinstance(s, str):
        raise UplinkError(f"{what} missing")
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise UplinkError(f"{what} is not base64") from None


def _obj(d: dict, key: str, what: str) -> dict:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise UplinkError(f"{what} is not an object")
    return v


def _uint(d: dict, key: str, what: str, default: int | None = None) -> int | None:
    v = d.get(key, default)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        raise UplinkError(f"{what} is not an unsigned integer")
    return v


def _dev(v) -> str | None:
    return v.lower() if isinstance(v, str) and v else None


def _str(v) -> str | None:
    return v if isinstance(v, str) else None


def parse_ttn(msg: dict) -> Uplink:
    """A The Things Stack v3 uplink message (MQTT or webhook JSON)."""
    up = msg.get("uplink_message")
    if not isinstance(up, dict):
        raise UplinkError("not a The Things Stack uplink message (no uplink_message)")
    ids = _obj(msg, "end_device_ids", "end_device_ids")
    dev = _dev(ids.get("dev_eui")) or _dev(ids.get("device_id"))
    # The Things Stack leaves out fields at their zero value: no f_cnt means frame counter 0
    return Uplink(_b64(up.get("frm_payload"), "uplink_message.frm_payload"),
                  _uint(up, "f_port", "uplink_message.f_port"), dev,
                  _uint(up, "f_cnt", "uplink_message.f_cnt", 0),
                  _str(up.get("received_at")) or _str(msg.get("received_at")),
                  _str(up.get("session_key_id")) or _str(ids.get("dev_addr")),
                  *_radio(up.get("rx_metadata")))


def parse_chirpstack(msg: dict) -> Uplink:
    """A ChirpStack v4 up event (integration JSON)."""
    if "data" not in msg or "deviceInfo" not in msg:
        raise UplinkError("not a ChirpStack up event (no data/deviceInfo)")
    info = _obj(msg, "deviceInfo", "deviceInfo")
    return Uplink(_b64(msg.get("data"), "data"), _uint(msg, "fPort", "fPort"), _dev(info.get("devEui")),
                  _uint(msg, "fCnt", "fCnt"), _str(msg.get("time")), _str(msg.get("devAddr")),
                  *_radio(msg.get("rxInfo")))


def _radio(rx) -> tuple[int | None, float | None, float | None]:
    """(gateway count, best RSSI, its SNR) from a list of per-gateway metadata; Nones where absent."""
    if not isinstance(rx, list):
        return None, None, None
    best = None
    for g in rx:
        r = g.get("rssi") if isinstance(g, dict) else None
        if isinstance(r, (int, float)) and not isinstance(r, bool) and (best is None or r > best[0]):
            s = g.get("snr")
            best = (r, s if isinstance(s, (int, float)) and not isinstance(s, bool) else None)
    return len(rx), (best[0] if best else None), (best[1] if best else None)


def parse_line(line: str, kind: str) -> Uplink:
    """One input line of `citynode decode --input KIND`."""
    line = line.strip()
    if kind == "hex":
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UplinkError(f"bad JSON: {e.msg}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("hex"), str):
                raise UplinkError("JSON line without a 'hex' field")
            try:
                payload = bytes.fromhex(obj["hex"])
            except ValueError:
                raise UplinkError("'hex' is not hex") from None
            dev = _str(obj.get("device")) or _str(obj.get("dev_eui"))
            return Uplink(payload, _uint(obj, "fport", "fport"), dev or None, _uint(obj, "fcnt", "fcnt"))
        return Uplink(_hex_or_b64(line))
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise UplinkError(f"bad JSON: {e.msg}") from None
    if not isinstance(obj, dict):
        raise UplinkError("expected a JSON object")
    if kind == "ttn":
        return parse_ttn(obj)
    if kind == "chirpstack":
        return parse_chirpstack(obj)
    raise UplinkError(f"unknown input kind {kind!r}")


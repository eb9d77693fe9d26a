"""Registry exports for bulk import into The Things Stack (CSV, JSON stream) and ChirpStack v4 (JSON).

These exports are the one place where root keys leave the registry: that is their purpose.
- tts-csv: The Things Stack bulk-import CSV: `;`-separated, header row; dev_eui;join_eui;app_key are required,
  id, name, lorawan_version, lorawan_phy_version, frequency_plan_id optional
  (thethingsindustries.com/docs/hardware/devices/adding-devices/adding-devices-in-bulk/device-csv/).
- tts-json: one end-device object per line. The Things Stack reads a devices.json file as a JSON stream, one
  object at a time (…/adding-devices-in-bulk/device-json/), and `ttn-lw-cli end-devices create` runs once per
  object until the input ends (lorawan-stack cmd/ttn-lw-cli/commands/bulk.go, `asBulk`), so
  `ttn-lw-cli end-devices create --application-id APP < devices.json` creates them all.
- chirpstack-json: a JSON array; each item holds the bodies of ChirpStack v4's DeviceService Create
  (`{"device": …}`) and CreateKeys (`{"device_keys": …}`) calls (chirpstack api/proto/api/device.proto). For
  LoRaWAN 1.0.x the AppKey goes in `nwk_key`; `app_key` is only for 1.1 and is left out.
"""
from __future__ import annotations

import csv
import json

from citynode.device.registry import Device

FORMATS = ("tts-csv", "tts-json", "chirpstack-json")
LORAWAN_VERSION = "MAC_V1_0_3"
PHY_VERSION = "RP001_V1_0_3_REV_A"
FREQUENCY_PLAN = "EU_863_870_TTN"
CSV_COLUMNS = ("dev_eui", "join_eui", "app_key", "id", "name", "lorawan_version", "lorawan_phy_version",
               "frequency_plan_id")


def tts_csv(devices, out, frequency_plan: str = FREQUENCY_PLAN) -> None:
    w = csv.writer(out, delimiter=";", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(CSV_COLUMNS)
    for d in devices:
        w.writerow((d.dev_eui, d.join_eui, d.app_key, d.device_id, d.name, LORAWAN_VERSION, PHY_VERSION,
                    frequency_plan))


def tts_device(d: Device, application_id: str | None = None, frequency_plan: str = FREQUENCY_PLAN) -> dict:
    ids: dict = {"device_id": d.device_id, "dev_eui": d.dev_eui, "join_eui": d.join_eui}
    if application_id:
        ids["application_ids"] = {"application_id": application_id}
    return {"ids": ids, "name": d.name, "lorawan_version": LORAWAN_VERSION, "lorawan_phy_version": PHY_VERSION,
            "frequency_plan_id": frequency_plan, "supports_join": True,
            "root_keys": {"app_key": {"key": d.app_key}}}


def tts_json(devices, out, application_id: str | None = None, frequency_plan: str = FREQUENCY_PLAN) -> None:
    for d in devices:
        out.write(json.dumps(tts_device(d, application_id, frequency_plan)) + "\n")


def chirpstack_device(d: Device, application_id: str | None = None, device_profile_id: str | None = None) -> dict:
    dev: dict = {"dev_eui": d.dev_eui.lower(), "join_eui": d.join_eui.lower(), "name": d.name,
                 "description": "citynode" + (f" ({d.board})" if d.board else "")}
    if application_id:
        dev["application_id"] = application_id
    if device_profile_id:
        dev["device_profile_id"] = device_profile_id
    if d.board:
        dev["tags"] = {"board": d.board}
    return {"device": dev, "device_keys": {"dev_eui": d.dev_eui.lower(), "nwk_key": d.app_key.lower()}}


def chirpstack_json(devices, out, application_id: str | None = None, device_profile_id: str | None = None) -> None:
    items = [chirpstack_device(d, application_id, device_profile_id) for d in devices]
    out.write(json.dumps(items, indent=2) + "\n")


def export(fmt: str, devices, out, application_id: str | None = None, device_profile_id: str | None = None,
           frequency_plan: str = FREQUENCY_PLAN) -> None:
    if fmt == "tts-csv":
        tts_csv(devices, out, frequency_plan)
    elif fmt == "tts-json":
        tts_json(devices, out, application_id, frequency_plan)
    elif fmt == "chirpstack-json":
        chirpstack_json(devices, out, application_id, device_profile_id)
    else:
        raise ValueError(f"unknown export format {fmt!r}; one of {FORMATS}")

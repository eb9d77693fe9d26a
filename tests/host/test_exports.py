"""Registry exports: The Things Stack CSV and JSON stream, ChirpStack v4 device + device-keys JSON."""
from __future__ import annotations

import json
import stat

import pytest

from citynode.device import registry as registry_db
from citynode.cli import main
from citynode.device.registry import Registry

# Two fixed identities (typed here, as a network-server operator would see them).
EUIS = ["0018B20000000101", "0018B20000000102"]
KEYS = ["000102030405060708090A0B0C0D0E0F", "F0E0D0C0B0A090807060504030201000"]
JOIN = "70B3D57ED0000010"


@pytest.fixture
def reg(tmp_path, monkeypatch):
    euis, keys = iter(EUIS), iter(KEYS)
    monkeypatch.setattr(registry_db, "new_dev_eui", lambda prefix="": next(euis))
    monkeypatch.setattr(registry_db, "new_app_key", lambda: next(keys))
    monkeypatch.setattr(registry_db, "_now", lambda: "2026-01-02T03:04:05Z")
    path = tmp_path / "fleet.db"
    with Registry(path) as r:
        r.create(1, board="heltec_v2", join_eui=JOIN)
        r.create(1, join_eui=JOIN)
    return str(path)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_tts_csv_exact(reg, capsys):
    out = run(capsys, "registry", "export", "--registry", reg, "--format", "tts-csv")
    assert out == (
        "dev_eui;join_eui;app_key;id;name;lorawan_version;lorawan_phy_version;frequency_plan_id\n"
        "0018B20000000101;70B3D57ED0000010;000102030405060708090A0B0C0D0E0F;eui-0018b20000000101;"
        "eui-0018b20000000101;MAC_V1_0_3;RP001_V1_0_3_REV_A;EU_863_870_TTN\n"
        "0018B20000000102;70B3D57ED0000010;F0E0D0C0B0A090807060504030201000;eui-0018b20000000102;"
        "eui-0018b20000000102;MAC_V1_0_3;RP001_V1_0_3_REV_A;EU_863_870_TTN\n")


def test_tts_json_is_one_end_device_object_per_line(reg, capsys):
    out = run(capsys, "registry", "export", "--registry", reg, "--format", "tts-json")
    lines = out.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == {
        "ids": {"device_id": "eui-0018b20000000101", "dev_eui": "0018B20000000101", "join_eui": "70B3D57ED0000010"},
        "name": "eui-0018b20000000101",
        "lorawan_version": "MAC_V1_0_3",
        "lorawan_phy_version": "RP001_V1_0_3_REV_A",
        "frequency_plan_id": "EU_863_870_TTN",
        "supports_join": True,
        "root_keys": {"app_key": {"key": "000102030405060708090A0B0C0D0E0F"}},
    }
    # a JSON stream: concatenated objects decode one after another
    dec, pos, objs = json.JSONDecoder(), 0, []
    text = out
    while text[pos:].strip():
        obj, end = dec.raw_decode(text, pos)
        objs.append(obj)
        pos = end + 1
    assert [o["ids"]["dev_eui"] for o in objs] == EUIS


def test_tts_json_with_application_id_and_frequency_plan(reg, capsys):
    out = run(capsys, "registry", "export", "--registry", reg, "--format", "tts-json", "--application-id",
              "city-air", "--frequency-plan", "EU_863_870")
    first = json.loads(out.splitlines()[1])
    assert first["ids"]["application_ids"] == {"application_id": "city-air"}
    assert first["frequency_plan_id"] == "EU_863_870"


def test_chirpstack_json_exact(reg, capsys):
    out = run(capsys, "registry", "export", "--registry", reg, "--format", "chirpstack-json",
              "--application-id", "5c9a0d6e-0000-4000-8000-000000000001",
              "--device-profile-id", "0b6a2b1c-0000-4000-8000-000000000002")
    assert json.loads(out) == [
        {"device": {"dev_eui": "0018b20000000101", "join_eui": "70b3d57ed0000010", "name": "eui-0018b20000000101",
                    "description": "citynode (heltec_v2)",
                    "application_id": "5c9a0d6e-0000-4000-8000-000000000001",
                    "device_profile_id": "0b6a2b1c-0000-4000-8000-000000000002",
                    "tags": {"board": "heltec_v2"}},
         # LoRaWAN 1.0.x: the AppKey goes in nwk_key; app_key (1.1 only) is absent
         "device_keys": {"dev_eui": "0018b20000000101", "nwk_key": "000102030405060708090a0b0c0d0e0f"}},
        {"device": {"dev_eui": "0018b20000000102", "join_eui": "70b3d57ed0000010", "name": "eui-0018b20000000102",
                    "description": "citynode",
                    "application_id": "5c9a0d6e-0000-4000-8000-000000000001",
                    "device_profile_id": "0b6a2b1c-0000-4000-8000-000000000002"},
         "device_keys": {"dev_eui": "0018b20000000102", "nwk_key": "f0e0d0c0b0a090807060504030201000"}},
    ]


def test_failed_devices_are_left_out_unless_all(reg, capsys):
    with Registry(reg) as r:
        r.set_status(EUIS[0], "failed")
    out = run(capsys, "registry", "export", "--registry", reg, "--format", "tts-csv")
    assert EUIS[0] not in out and EUIS[1] in out
    out = run(capsys, "registry", "export", "--registry", reg, "--format", "tts-csv", "--all")
    assert EUIS[0] in out and EUIS[1] in out


def test_output_file_is_private_even_under_a_permissive_umask(reg, capsys, tmp_path):
    import os

    dest = tmp_path / "devices.csv"
    old = os.umask(0)
    try:
        run(capsys, "registry", "export", "--registry", reg, "--format", "tts-csv", "-o", str(dest))
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert dest.read_text().splitlines()[0].startswith("dev_eui;join_eui;app_key")


def test_name_with_semicolon_is_quoted(tmp_path, capsys, monkeypatch):
    import csv
    import io

    monkeypatch.setattr(registry_db, "new_dev_eui", lambda prefix="": EUIS[0])
    path = tmp_path / "r.db"
    with Registry(path) as r:
        r.create(1)
        r._db.execute("UPDATE devices SET name = 'Lamp post 7; Neumarkt'")
    out = run(capsys, "registry", "export", "--registry", str(path), "--format", "tts-csv")
    assert '"Lamp post 7; Neumarkt"' in out
    rows = list(csv.DictReader(io.StringIO(out), delimiter=";"))
    assert rows[0]["name"] == "Lamp post 7; Neumarkt" and rows[0]["lorawan_version"] == "MAC_V1_0_3"


def test_unknown_format_is_a_usage_error(reg, capsys):
    with pytest.raises(SystemExit) as e:
        main(["registry", "export", "--registry", reg, "--format", "ttn-v2"])
    assert e.value.code == 2


def test_chirpstack_json_without_the_ids_the_api_requires_is_a_usage_error(reg, capsys):
    from citynode.cli import main

    assert main(["registry", "export", "--registry", reg, "--format", "chirpstack-json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "needs --application-id and --device-profile-id" in out.err
    assert main(["registry", "export", "--registry", reg, "--format", "chirpstack-json",
                 "--application-id", "a"]) == 2

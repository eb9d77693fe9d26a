"""A device whose enclosure was found open (docs/security.md, section 4): `citynode registry flag`, recorded with
its time in the registry's events table (made by migration in an older registry); `registry list` shows it,
`registry export` leaves the device out and says so, `provision --dev-eui` will not write it to a node, and
`provision --replace DEV_EUI` gives its node a new identity even after a reflash erased the old one."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from citynode.device import registry as registry_db
from citynode.cli import main
from citynode.errors import CitynodeError
from citynode.device.registry import Registry
from provision_vnode import VirtualNode

CITYNODE = str(Path(sys.executable).with_name("citynode"))


def cli(*argv, timeout=60):
    return subprocess.run([CITYNODE, *argv], capture_output=True, text=True, timeout=timeout)


def _fleet(tmp_path, n=3) -> tuple[str, list[str]]:
    reg = str(tmp_path / "fleet.db")
    r = cli("provision", "--registry", reg, "--count", str(n))
    assert r.returncode == 0, r.stderr
    return reg, r.stdout.split()


def test_a_flagged_device_is_listed_as_such_and_left_out_of_every_export_until_cleared(tmp_path):
    reg, euis = _fleet(tmp_path)
    r = cli("registry", "flag", "--registry", reg, euis[1].lower(), "--opened", "--note", "seal 0421\nbroken")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{euis[1]}: flagged, enclosure found open 20") and "(seal 0421 broken)" in r.stdout
    listed = cli("registry", "list", "--registry", reg).stdout.splitlines()
    assert listed[0].split()[-1] == "flag"
    row = [x for x in listed if x.startswith(euis[1])][0]
    assert "opened 20" in row and row.endswith("(seal 0421 broken)")
    assert all(x.endswith(" -") for x in listed[1:] if not x.startswith(euis[1]))
    for fmt, extra in (("tts-csv", ()), ("tts-json", ()),
                       ("chirpstack-json", ("--application-id", "a", "--device-profile-id", "p"))):
        for more in ((), ("--all",)):
            r = cli("registry", "export", "--registry", reg, "--format", fmt, *extra, *more)
            assert r.returncode == 1, (fmt, r.stderr)
            assert euis[1] not in r.stdout.upper() and euis[0] in r.stdout.upper() and euis[2] in r.stdout.upper()
            assert r.stderr.count("\n") == 1
            assert r.stderr.startswith(f"citynode registry export: error: {euis[1]} left out: flagged, enclosure "
                                       "found open 20")
            assert f"--replace {euis[1]}" in r.stderr
    out = tmp_path / "devices.csv"
    r = cli("registry", "export", "--registry", reg, "--format", "tts-csv", "-o", str(out))
    assert r.returncode == 1 and "wrote 2 devices" in r.stderr and euis[1] not in out.read_text()
    r = cli("registry", "flag", "--registry", reg, euis[1], "--clear", "--note", "our own visit, ticket 88")
    assert r.returncode == 0 and r.stdout.startswith(f"{euis[1]}: flag cleared 20"), r.stderr
    r = cli("registry", "export", "--registry", reg, "--format", "tts-csv")
    assert r.returncode == 0 and r.stderr == "" and euis[1] in r.stdout
    with Registry(reg) as rr:
        assert [(e.kind, e.note) for e in rr.events(euis[1])] == [("opened", "seal 0421 broken"),
                                                                 ("cleared", "our own visit, ticket 88")]
        assert rr.flags() == {}


def test_flag_usage_and_errors_are_one_line(tmp_path, capsys):
    reg, euis = _fleet(tmp_path, 1)
    assert main(["registry", "flag", "--registry", reg, euis[0], "--clear"]) == 1
    assert capsys.readouterr().err == f"citynode registry: error: DevEUI {euis[0]} is not flagged\n"
    assert main(["registry", "flag", "--registry", reg, "70B3D57ED0009999", "--opened"]) == 1
    assert "is not in registry" in capsys.readouterr().err
    for wrong in ([], ["--opened", "--clear"]):  # one of the two, and only one
        with pytest.raises(SystemExit) as e:
            main(["registry", "flag", "--registry", reg, euis[0], *wrong])
        assert e.value.code == 2


def test_a_flagged_identity_is_never_written_to_a_node_again(tmp_path):
    reg, euis = _fleet(tmp_path, 1)
    assert cli("registry", "flag", "--registry", reg, euis[0], "--opened").returncode == 0
    with VirtualNode(tmp_path / "node") as node:
        r = cli("provision", "--registry", reg, "--port", node.port, "--dev-eui", euis[0])
        nvs = node.nvs()
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert f"DevEUI {euis[0]} is flagged: enclosure found open 20" in r.stderr and "--replace" in r.stderr
    assert nvs == {}


def test_replace_with_the_old_dev_eui_retires_it_after_a_reflash_erased_it_from_the_node(tmp_path):
    """The way back for an opened production node: flag, reflash (NVS erased: the node holds no DevEUI), then
    provision --replace OLD: a new identity, the old one retired and its replacement recorded."""
    reg = str(tmp_path / "fleet.db")
    with VirtualNode(tmp_path / "node") as node:
        assert cli("provision", "--registry", reg, "--port", node.port).returncode == 0
        with Registry(reg) as rr:
            (old,) = rr.devices()
        assert cli("registry", "flag", "--registry", reg, old.dev_eui, "--opened").returncode == 0
        (node.cwd / "nvs.json").unlink()  # what writing a MicroPython image does to NVS
        other = cli("provision", "--registry", reg, "--port", node.port, "--replace", "70B3D57ED0009999")
        r = cli("provision", "--registry", reg, "--port", node.port, "--replace", old.dev_eui)
        nvs = node.nvs()
        held = cli("provision", "--registry", reg, "--port", node.port, "--replace", old.dev_eui)
    assert other.returncode == 1 and "is not in registry" in other.stderr
    assert r.returncode == 0, r.stderr
    with Registry(reg) as rr:
        was, new = rr.devices()
        assert was.status == "retired" and new.status == "provisioned" and r.stdout.split() == [new.dev_eui]
        assert [(e.kind, e.note) for e in rr.events(old.dev_eui)][-1] == ("replaced", f"by {new.dev_eui}")
    assert nvs["cn_keys"]["dev_eui"] == ["b", new.dev_eui.lower()]
    exported = cli("registry", "export", "--registry", reg, "--format", "tts-csv")
    assert exported.returncode == 0 and old.dev_eui not in exported.stdout and new.dev_eui in exported.stdout
    # the node now holds the new identity: naming the old one again is refused, not a silent second retirement
    assert held.returncode == 1 and f"holds DevEUI {new.dev_eui}, not {old.dev_eui}" in held.stderr


def test_count_with_node_only_options_is_a_usage_error(tmp_path, capsys):
    for extra in (["--production"], ["--replace"], ["--replace", "70B3D57ED0000001"]):
        assert main(["provision", "--registry", str(tmp_path / "r.db"), "--count", "1", *extra]) == 2
        assert "go with --port" in capsys.readouterr().err


def _v1_registry(path: Path) -> None:
    """A registry as citynode wrote it before schema 2 (no events table), with one device."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE devices (seq INTEGER PRIMARY KEY, dev_eui TEXT NOT NULL UNIQUE, join_eui TEXT NOT NULL,
            app_key TEXT NOT NULL, device_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL, board TEXT,
            created TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('new', 'provisioned', 'failed',
            'retired')), provisioned TEXT);
        CREATE TABLE locations (dev_eui TEXT PRIMARY KEY, lat REAL NOT NULL, lon REAL NOT NULL, updated TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1');
        INSERT INTO devices VALUES (1, '70B3D57ED0000001', '0000000000000000', '00112233445566778899AABBCCDDEEFF',
            'eui-70b3d57ed0000001', 'eui-70b3d57ed0000001', NULL, '2025-01-01T00:00:00Z', 'provisioned', NULL);
    """)
    db.commit()
    db.close()
    os.chmod(path, 0o600)


def test_an_older_registry_gets_the_events_table_by_migration_and_reads_without_it(tmp_path):
    path = tmp_path / "old.db"
    _v1_registry(path)
    with Registry(path, readonly=True) as rr:  # not migrated: no events, no flags
        assert rr.flags() == {} and rr.events() == []
    r = cli("registry", "list", "--registry", str(path))
    assert r.returncode == 0 and r.stdout.splitlines()[1].endswith(" -")
    with Registry(path) as rr:  # opened for writing: migrated
        rr.flag_opened("70B3D57ED0000001", "found open")
        assert list(rr.flags()) == ["70B3D57ED0000001"]
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == str(registry_db.SCHEMA_VERSION)
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    db.close()


def test_a_citynode_that_knows_no_flags_refuses_a_registry_that_has_them(tmp_path, monkeypatch):
    path = tmp_path / "fleet.db"
    with Registry(path) as rr:
        rr.create(1)
    monkeypatch.setattr(registry_db, "SCHEMA_VERSION", 1)  # the citynode before schema 2
    with pytest.raises(CitynodeError, match="has schema 2; this citynode knows up to 1"):
        Registry(path)
    with pytest.raises(CitynodeError, match="not a citynode registry"):
        Registry(path, readonly=True)


def test_export_json_of_a_fleet_without_flags_is_unchanged(tmp_path):
    reg, euis = _fleet(tmp_path, 2)
    r = cli("registry", "export", "--registry", reg, "--format", "chirpstack-json", "--application-id", "a",
            "--device-profile-id", "p")
    assert r.returncode == 0 and r.stderr == "" and len(json.loads(r.stdout)) == 2

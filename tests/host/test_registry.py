"""The device registry: private file, unique identities, safe under concurrent provisioning processes."""
from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from citynode.device import registry as registry_db
from citynode.cli import main
from citynode.errors import CitynodeError, InputError
from citynode.device.registry import Registry

CITYNODE = str(Path(sys.executable).with_name("citynode"))
HEX16 = re.compile(r"^[0-9A-F]{16}$")


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_registry_and_its_wal_files_are_0600_under_a_permissive_umask(tmp_path):
    path = tmp_path / "fleet.db"
    old = os.umask(0)
    try:
        with Registry(path) as reg:
            reg.create(3)
            # WAL mode keeps -wal and -shm beside the file while a connection is open
            for suffix in ("-wal", "-shm"):
                side = tmp_path / ("fleet.db" + suffix)
                assert side.exists(), suffix
                assert mode(side) == 0o600, (suffix, oct(mode(side)))
            assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_registry_open_to_others_is_refused(tmp_path):
    path = tmp_path / "fleet.db"
    Registry(path).close()
    path.chmod(0o644)
    with pytest.raises(CitynodeError, match="readable by others"):
        Registry(path)


def test_not_a_registry_gives_one_error_line(tmp_path, capsys):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    path.chmod(0o600)
    assert main(["registry", "list", "--registry", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a citynode registry" in err


def test_missing_registry_for_export_is_an_error_not_a_new_file(tmp_path, capsys):
    path = tmp_path / "none.db"
    assert main(["registry", "export", "--registry", str(path), "--format", "tts-csv"]) == 1
    assert not path.exists()
    assert "does not exist" in capsys.readouterr().err


def test_identities_are_unique_and_well_formed(tmp_path):
    with Registry(tmp_path / "r.db") as reg:
        devs = reg.create(1200)
        assert reg.count() == 1200
        stored = reg.devices()
    assert [d.dev_eui for d in stored] == [d.dev_eui for d in devs]
    euis = {d.dev_eui for d in devs}
    keys = {d.app_key for d in devs}
    assert len(euis) == 1200 and len(keys) == 1200
    for d in devs:
        assert HEX16.match(d.dev_eui)
        first = int(d.dev_eui[:2], 16)
        assert first & 0x02 and not first & 0x01  # locally administered, unicast
        assert re.fullmatch(r"[0-9A-F]{32}", d.app_key)
        assert d.join_eui == "0000000000000000"
        assert d.device_id == "eui-" + d.dev_eui.lower()
        assert d.status == "new"
    # keys are not derived from each other: no key repeats any 8-byte half of another
    halves = [k[:16] for k in keys] + [k[16:] for k in keys]
    assert len(set(halves)) == len(halves)


def test_prefix_and_join_eui_from_options_and_from_registry_settings(tmp_path):
    path = tmp_path / "r.db"
    with Registry(path) as reg:
        devs = reg.create(50, eui_prefix="70b3d5", join_eui="70-B3-D5-7E-D0-00-00-10")
        assert all(d.dev_eui.startswith("70B3D5") and d.join_eui == "70B3D57ED0000010" for d in devs)
        reg.set_settings(join_eui="0102030405060708", eui_prefix="0018B2000")
    with Registry(path) as reg:
        devs = reg.create(20, board="heltec_v2")
    assert all(d.dev_eui.startswith("0018B2000") and d.join_eui == "0102030405060708" for d in devs)
    assert all(d.board == "heltec_v2" for d in devs)
    with Registry(path) as reg:
        with pytest.raises(InputError):
            reg.create(1, eui_prefix="0123456789A")  # 11 nibbles leave too few random bits
        with pytest.raises(InputError):
            reg.create(1, join_eui="0102")
        with pytest.raises(InputError):
            reg.create(1, eui_prefix="70B3DG")


def test_a_colliding_dev_eui_is_replaced_not_duplicated(tmp_path, monkeypatch):
    seq = iter(["0200000000000001", "0200000000000001", "0200000000000001", "0200000000000002"])
    monkeypatch.setattr(registry_db, "new_dev_eui", lambda prefix="": next(seq))
    with Registry(tmp_path / "r.db") as reg:
        a = reg.create(1)
        b = reg.create(1)
        assert [a[0].dev_eui, b[0].dev_eui] == ["0200000000000001", "0200000000000002"]
        assert reg.count() == 2


def test_exhausted_retries_roll_back_the_whole_batch(tmp_path, monkeypatch):
    with Registry(tmp_path / "r.db") as reg:
        reg.create(1)
        taken = reg.devices()[0].dev_eui
        seq = iter(["0200000000000009"] + [taken] * 100)
        monkeypatch.setattr(registry_db, "new_dev_eui", lambda prefix="": next(seq))
        with pytest.raises(CitynodeError, match="no free DevEUI"):
            reg.create(2)  # the first of the batch was inserted, then the batch failed
        assert [d.dev_eui for d in reg.devices()] == [taken]


def test_status_changes(tmp_path):
    with Registry(tmp_path / "r.db") as reg:
        d = reg.create(1)[0]
        p = reg.set_status(d.dev_eui.lower(), "provisioned")
        assert p.status == "provisioned" and p.provisioned
        assert reg.set_status(d.dev_eui, "failed").provisioned is None
        with pytest.raises(CitynodeError, match="not in registry"):
            reg.set_status("0200000000000000", "failed")
        with pytest.raises(ValueError):
            reg.set_status(d.dev_eui, "lost")


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    reg = str(tmp_path / "r.db")
    for argv in (["provision", "--registry", reg],
                 ["provision", "--registry", reg, "--count", "2", "--port", "/dev/null"],
                 ["provision", "--registry", reg, "--count", "0"],
                 ["provision", "--registry", reg, "--count", "1", "--dev-eui", "0200000000000000"],
                 ["provision", "--registry", reg, "--count", "1", "--join-eui", "12"]):
        with pytest.raises(SystemExit) as e:
            rc = main(argv)
            raise SystemExit(rc)
        assert e.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err


def test_cli_count_prints_one_dev_eui_a_line_and_registry_init_sets_defaults(tmp_path, capsys):
    reg = str(tmp_path / "r.db")
    assert main(["registry", "init", "--registry", reg, "--join-eui", "70B3D57ED0000010",
                 "--eui-prefix", "70B3D5"]) == 0
    capsys.readouterr()
    assert main(["provision", "--registry", reg, "--count", "7", "--board", "ttgo-lora32-v2.1"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 7 and all(HEX16.match(x) and x.startswith("70B3D5") for x in lines)
    with Registry(reg) as r:
        assert [d.dev_eui for d in r.devices()] == lines
        assert {d.join_eui for d in r.devices()} == {"70B3D57ED0000010"}


def test_twenty_concurrent_processes_provision_1000_unique_identities(tmp_path):
    """The issue's target: 20 `citynode provision --count 50` at once on one new registry."""
    reg = tmp_path / "fleet.db"
    procs = [subprocess.Popen([CITYNODE, "provision", "--registry", str(reg), "--count", "50"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(20)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        # a process that found the registry being written says that it waits, and nothing else
        assert all(x.startswith("citynode: waiting for the registry lock on ") for x in err.splitlines()), err
    per_proc = [out.split() for out, _ in outs]
    assert all(len(x) == 50 for x in per_proc)  # every process got all of its identities
    printed = [e for x in per_proc for e in x]
    assert len(set(printed)) == 1000  # no DevEUI handed out twice
    db = sqlite3.connect(reg)
    rows = db.execute("SELECT dev_eui, app_key FROM devices").fetchall()
    assert len(rows) == 1000  # no write lost
    assert {r[0] for r in rows} == set(printed)
    assert len({r[1] for r in rows}) == 1000
    assert mode(reg) == 0o600


def test_a_node_s_location_is_recorded_checked_and_kept(tmp_path, capsys):
    path = tmp_path / "fleet.db"
    with Registry(path) as reg:
        dev = reg.create(2)[0]
        assert reg.location(dev.dev_eui) is None
    assert main(["registry", "locate", "--registry", str(path), dev.dev_eui.lower(), "52.2799", "8.0472"]) == 0
    assert capsys.readouterr().out.strip() == f"{dev.dev_eui}: 52.279900, 8.047200"
    with Registry(path) as reg:
        assert reg.location(dev.dev_eui) == (52.2799, 8.0472)
        with pytest.raises(InputError, match="not a place on Earth"):
            reg.set_location(dev.dev_eui, 91.0, 8.0)
        assert reg.location(dev.dev_eui) == (52.2799, 8.0472)  # a refused change keeps what was there
    assert main(["registry", "locate", "--registry", str(path), "70B3D57ED0FFFFFF", "52", "8"]) == 1
    assert "is not in registry" in capsys.readouterr().err


def test_a_board_no_board_file_has_is_a_usage_error_and_nothing_is_stored(tmp_path, capsys):
    path = tmp_path / "fleet.db"
    assert main(["provision", "--registry", str(path), "--count", "2", "--board", "heltec_v2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("citynode provision: error: unknown board 'heltec_v2'; supported boards: ")
    assert "heltec-wifi-lora-32-v2" in err and not path.exists()
    assert main(["budget", "--board", "heltec_v2"]) == 2
    assert main(["provision", "--registry", str(path), "--count", "1", "--board", "heltec-wifi-lora-32-v2"]) == 0
    with Registry(path) as reg:
        assert [d.board for d in reg.devices()] == ["heltec-wifi-lora-32-v2"]


def test_a_locked_registry_says_it_waits_then_goes_on(tmp_path, capsys):
    import threading
    import time as _time

    path = tmp_path / "fleet.db"
    assert main(["provision", "--registry", str(path), "--count", "1"]) == 0
    capsys.readouterr()
    holder = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    threading.Timer(1.0, lambda: holder.execute("COMMIT")).start()
    t0 = _time.monotonic()
    assert main(["provision", "--registry", str(path), "--count", "1"]) == 0
    waited = _time.monotonic() - t0
    err = capsys.readouterr().err
    assert f"citynode: waiting for the registry lock on {path} (another citynode process is writing it)\n" == err
    assert waited >= 0.9
    holder.close()
    with Registry(path) as reg:
        assert reg.count() == 2


def test_a_read_only_registry_can_still_be_listed_and_exported(tmp_path):
    """As a user who may read the registry but not write it (nor its folder): list and export work, a change
    says why it cannot (it said 'not a citynode registry')."""
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # (pytest's own temporary folders are closed to other users)
    os.chmod(base, 0o755)
    folder = base / "ro"
    folder.mkdir()
    path = folder / "fleet.db"
    assert main(["provision", "--registry", str(path), "--count", "2"]) == 0
    if os.geteuid() == 0:  # root may write anything: run the commands as nobody, who owns a read-only file
        os.chown(path, 65534, -1)
        os.chmod(path, 0o400)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        os.chmod(path, 0o400)
        os.chmod(folder, 0o555)
        prefix = []
    run = lambda *a: subprocess.run(prefix + [sys.executable, "-m", "citynode.cli", *a], capture_output=True,  # noqa: E731
                                    text=True, timeout=60)
    try:
        r = run("registry", "list", "--registry", str(path))
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 3, r.stderr
        r = run("registry", "export", "--registry", str(path), "--format", "tts-csv")
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 3, r.stderr
        r = run("provision", "--registry", str(path), "--count", "1")
        assert r.returncode == 1 and "is read-only for this user" in r.stderr
    finally:
        os.chmod(folder, 0o755)
        import shutil

        shutil.rmtree(base)

"""Keys never appear in output, errors or node traffic unless --show-keys; provisioning a (virtual) node over
mpremote writes and verifies them. The virtual node is the MicroPython unix port on a pty (provision_vnode.py)."""
from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from citynode.device.registry import Device, Registry
from provision_vnode import VirtualNode

CITYNODE = str(Path(sys.executable).with_name("citynode"))


def cli(*argv, timeout=60):
    return subprocess.run([CITYNODE, *argv], capture_output=True, text=True, timeout=timeout)


def all_keys(reg) -> list[str]:
    return [r[0] for r in sqlite3.connect(reg).execute("SELECT app_key FROM devices")]


def forms(key_hex: str) -> list[str]:
    raw = bytes.fromhex(key_hex)
    return [key_hex.upper(), key_hex.lower(), base64.b64encode(raw).decode(), base64.b64encode(raw).decode()[:20],
            base64.urlsafe_b64encode(raw).decode()[:20], raw.hex(" ")]


def assert_no_key(text: str, keys) -> None:
    for k in keys:
        for f in forms(k):
            assert f not in text, "key material leaked"


def test_repr_of_a_device_hides_its_key():
    d = Device("0018B20000000101", "0000000000000000", "000102030405060708090A0B0C0D0E0F")
    assert_no_key(repr(d) + str(d), [d.app_key])
    assert "0018B20000000101" in repr(d)


def test_count_prints_dev_euis_only_and_show_keys_prints_keys(tmp_path):
    reg = str(tmp_path / "r.db")
    r = cli("provision", "--registry", reg, "--count", "5")
    assert r.returncode == 0
    keys = all_keys(reg)
    assert len(keys) == 5
    assert_no_key(r.stdout + r.stderr, keys)
    r = cli("registry", "list", "--registry", reg)
    assert r.returncode == 0
    assert_no_key(r.stdout + r.stderr, keys)
    r = cli("provision", "--registry", reg, "--count", "2", "--show-keys")
    new = [k for k in all_keys(reg) if k not in keys]
    assert len(new) == 2 and all(k in r.stdout for k in new)  # the check above is able to see a key


def test_port_provisioning_writes_verifies_and_never_echoes_keys(tmp_path):
    reg = str(tmp_path / "r.db")
    with VirtualNode(tmp_path / "node") as node:
        r = cli("provision", "--registry", reg, "--board", "heltec-wifi-lora-32-v2", "--port", node.port)
        assert r.returncode == 0, r.stderr
        nvs = node.nvs()
        seen = bytes(node.seen).decode("latin-1")
    with Registry(reg) as rr:
        (dev,) = rr.devices()
    assert r.stdout.split() == [dev.dev_eui]
    assert "verified" in r.stderr
    assert dev.status == "provisioned" and dev.board == "heltec-wifi-lora-32-v2" and dev.provisioned
    assert nvs == {"cn_keys": {"dev_eui": ["b", dev.dev_eui.lower()], "join_eui": ["b", dev.join_eui.lower()],
                               "app_key": ["b", dev.app_key.lower()]}}
    assert_no_key(r.stdout + r.stderr, [dev.app_key])
    assert_no_key(seen, [dev.app_key])  # the node sent back nothing that holds the key
    assert "CN-SUM" in seen and "CN-OK" in seen


def test_show_keys_with_port_prints_the_written_keys(tmp_path):
    reg = str(tmp_path / "r.db")
    with VirtualNode(tmp_path / "node") as node:
        r = cli("provision", "--registry", reg, "--port", node.port, "--show-keys")
    assert r.returncode == 0, r.stderr
    (key,) = all_keys(reg)
    dev_eui, join_eui, app_key = r.stdout.split()
    assert app_key == key and join_eui == "0000000000000000"


def test_existing_identity_goes_to_a_replacement_node(tmp_path):
    reg = str(tmp_path / "r.db")
    eui = cli("provision", "--registry", reg, "--count", "1").stdout.strip()
    with VirtualNode(tmp_path / "node") as node:
        r = cli("provision", "--registry", reg, "--port", node.port, "--dev-eui", eui.lower(), "--board", "tbeam")
        nvs = node.nvs()
    assert r.returncode == 0, r.stderr
    with Registry(reg) as rr:
        (dev,) = rr.devices()
    assert dev.dev_eui == eui and dev.status == "provisioned" and dev.board == "tbeam"
    assert nvs["cn_keys"]["app_key"] == ["b", dev.app_key.lower()]


def failing_run(tmp_path, node_path: str | None, *extra):
    reg = str(tmp_path / "r.db")
    with VirtualNode(tmp_path / "node", micropypath=node_path) as node:
        r = cli("provision", "--registry", reg, "--port", node.port, *extra)
        seen = bytes(node.seen).decode("latin-1")
    keys = all_keys(reg)
    assert r.returncode == 1
    assert r.stdout == ""
    assert_no_key(r.stdout + r.stderr + seen, keys)
    with Registry(reg) as rr:
        assert [d.status for d in rr.devices()] == ["failed"]
    return r.stderr


def test_node_without_nvs_fails_cleanly_before_spending_an_identity(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    reg = str(tmp_path / "r.db")
    with VirtualNode(tmp_path / "node", micropypath=str(empty)) as node:
        r = cli("provision", "--registry", reg, "--port", node.port)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.count("\n") == 1
    assert "neither esp32.NVS nor cnode.nvsfile" in r.stderr
    assert all_keys(reg) == []


def test_a_node_that_holds_an_identity_is_not_overwritten_unless_asked(tmp_path):
    reg = str(tmp_path / "r.db")
    with VirtualNode(tmp_path / "node") as node:
        assert cli("provision", "--registry", reg, "--port", node.port).returncode == 0
        with Registry(reg) as rr:
            (first,) = rr.devices()
        r = cli("provision", "--registry", reg, "--port", node.port)  # the same board plugged in again
        assert r.returncode == 1 and r.stderr.count("\n") == 1
        assert f"already holds DevEUI {first.dev_eui} (status provisioned in this registry)" in r.stderr
        assert f"--dev-eui {first.dev_eui}" in r.stderr
        with Registry(reg) as rr:
            assert rr.count() == 1  # nothing spent
        r = cli("provision", "--registry", reg, "--port", node.port, "--dev-eui", first.dev_eui)
        assert r.returncode == 0, r.stderr  # writing the same identity again is fine
        r = cli("provision", "--registry", reg, "--port", node.port, "--replace")
        assert r.returncode == 0, r.stderr
        nvs = node.nvs()
    with Registry(reg) as rr:
        old, new = rr.devices()
    assert old.dev_eui == first.dev_eui and old.status == "retired"
    assert new.status == "provisioned" and r.stdout.split() == [new.dev_eui]
    assert nvs["cn_keys"]["dev_eui"] == ["b", new.dev_eui.lower()]
    assert nvs["cn_keys"]["app_key"] == ["b", new.app_key.lower()]
    exported = cli("registry", "export", "--registry", reg, "--format", "tts-csv").stdout
    assert old.dev_eui not in exported and new.dev_eui in exported
    assert_no_key(r.stdout + r.stderr, [old.app_key, new.app_key])


def test_a_port_held_by_another_program_fails_with_one_line(tmp_path):
    import serial

    reg = str(tmp_path / "r.db")
    with VirtualNode(tmp_path / "node") as node:
        other = serial.Serial(node.port, exclusive=True)  # e.g. a serial monitor left open
        try:
            r = cli("provision", "--registry", reg, "--port", node.port)
        finally:
            other.close()
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "cannot open" in r.stderr and "another program" in r.stderr
    assert all_keys(reg) == []


def test_node_whose_nvs_cannot_be_written_fails_cleanly(tmp_path):
    (tmp_path / "node" / "nvs.json").mkdir(parents=True)  # commit() cannot replace a folder
    err = failing_run(tmp_path, None)
    assert err.count("\n") == 1 and "writing keys failed" in err and "OSError" in err


FLAKY_NVS = '''
from cnode_real_nvsfile import NVS as _NVS
class NVS(_NVS):
    def get_blob(self, key, buf):
        n = _NVS.get_blob(self, key, buf)
        if key == "app_key":
            buf[0] ^= 1
        return n
'''


def test_read_back_mismatch_is_detected_and_even_debug_output_holds_no_key(tmp_path):
    fake = tmp_path / "fakefw"
    (fake / "cnode").mkdir(parents=True)
    (fake / "cnode" / "__init__.py").write_text("")
    (fake / "cnode" / "nvsfile.py").write_text(FLAKY_NVS)
    real = Path(__file__).resolve().parents[2] / "firmware" / "cnode" / "nvsfile.py"
    (fake / "cnode_real_nvsfile.py").write_text(real.read_text())
    err = failing_run(tmp_path, str(fake), "--debug")
    assert "holds different app_key than the registry" in err


def test_unopenable_port_fails_with_one_line(tmp_path):
    reg = str(tmp_path / "r.db")
    r = cli("provision", "--registry", reg, "--port", str(tmp_path / "no-such-tty"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    assert all_keys(reg) == []  # no identity spent on a board that is not there


def test_silent_port_times_out_with_one_line(tmp_path):
    """A pty with nothing behind it: no REPL answers; the command gives up instead of hanging."""
    import os
    import pty

    m, s = pty.openpty()
    try:
        reg = str(tmp_path / "r.db")
        r = cli("provision", "--registry", reg, "--port", os.ttyname(s), "--timeout", "2", timeout=60)
    finally:
        os.close(m)
        os.close(s)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no MicroPython REPL" in r.stderr
    assert all_keys(reg) == []


@pytest.mark.parametrize("fmt", ["tts-csv", "tts-json", "chirpstack-json"])
def test_exports_are_where_keys_go(tmp_path, fmt):
    reg = str(tmp_path / "r.db")
    cli("provision", "--registry", reg, "--count", "3")
    extra = ("--application-id", "a", "--device-profile-id", "p") if fmt == "chirpstack-json" else ()
    r = cli("registry", "export", "--registry", reg, "--format", fmt, *extra)
    assert r.returncode == 0
    for k in all_keys(reg):
        assert k in r.stdout or k.lower() in r.stdout
    if fmt == "chirpstack-json":
        assert len(json.loads(r.stdout)) == 3

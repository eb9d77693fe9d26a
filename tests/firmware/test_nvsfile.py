# cnode.nvsfile: the file-backed esp32.NVS stand-in (runs under CPython and the MicroPython unix port).
import errno
import os
import sys

from cnode.nvsfile import NVS
from fwtest import raises

_PATH = "/tmp/cnode_test_nvsfile_%s.json" % sys.implementation.name


def _fresh():
    for p in (_PATH, _PATH + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass
    return _PATH


def test_blob_round_trip_after_commit_in_a_new_object():
    path = _fresh()
    n = NVS("cn_keys", path)
    n.set_blob("dev_eui", b"\x00\x18\xb2\x00\x00\x00\x01\x01")
    n.set_blob("app_key", bytearray(range(16)))
    n.commit()
    m = NVS("cn_keys", path)
    buf = bytearray(32)
    assert m.get_blob("dev_eui", buf) == 8
    assert bytes(buf[:8]) == b"\x00\x18\xb2\x00\x00\x00\x01\x01"
    assert m.get_blob("app_key", buf) == 16
    assert bytes(buf[:16]) == bytes(range(16))


def test_missing_key_raises_enoent_and_types_are_separate():
    path = _fresh()
    n = NVS("cn_set", path)
    e = raises(OSError, n.get_blob, "nothing", bytearray(8))
    assert e.args[0] == errno.ENOENT
    n.set_i32("period", -300)
    assert n.get_i32("period") == -300
    assert raises(OSError, n.get_blob, "period", bytearray(8)).args[0] == errno.ENOENT
    n.set_blob("b", b"x")
    assert raises(OSError, n.get_i32, "b").args[0] == errno.ENOENT


def test_uncommitted_changes_are_not_on_file():
    path = _fresh()
    n = NVS("cn_keys", path)
    n.set_i32("x", 1)
    assert n.get_i32("x") == 1  # visible to the object that set it
    assert raises(OSError, NVS("cn_keys", path).get_i32, "x").args[0] == errno.ENOENT
    n.commit()
    assert NVS("cn_keys", path).get_i32("x") == 1


def test_namespaces_are_separate_and_erase_key():
    path = _fresh()
    a = NVS("cn_keys", path)
    b = NVS("cn_set", path)
    a.set_i32("k", 7)
    a.commit()
    b.set_i32("k", 9)
    b.commit()
    assert NVS("cn_keys", path).get_i32("k") == 7
    assert NVS("cn_set", path).get_i32("k") == 9
    a.erase_key("k")
    a.commit()
    assert raises(OSError, NVS("cn_keys", path).get_i32, "k").args[0] == errno.ENOENT
    assert NVS("cn_set", path).get_i32("k") == 9
    assert raises(OSError, a.erase_key, "k").args[0] == errno.ENOENT


def test_limits():
    path = _fresh()
    n = NVS("cn_keys", path)
    n.set_blob("app_key", bytes(16))
    assert raises(OSError, n.get_blob, "app_key", bytearray(15)).args[0] == errno.EINVAL  # buffer too small
    assert raises(OSError, n.set_i32, "sixteen_chars_xx", 1).args[0] == errno.EINVAL  # key > 15 characters
    raises(OverflowError, n.set_i32, "big", 0x80000000)
    n.set_i32("min", -0x80000000)
    raises(ValueError, NVS, "a_namespace_too_long")


def test_torn_file_reads_as_blank():
    path = _fresh()
    with open(path, "w") as f:
        f.write('{"cn_keys": {"app_key": ["b", "00')
    n = NVS("cn_keys", path)
    assert raises(OSError, n.get_blob, "app_key", bytearray(16)).args[0] == errno.ENOENT
    n.set_blob("app_key", b"\x01" * 16)
    n.commit()
    buf = bytearray(16)
    assert NVS("cn_keys", path).get_blob("app_key", buf) == 16 and bytes(buf) == b"\x01" * 16

# File-backed stand-in for esp32.NVS (same methods) for the unix-port virtual node and tests: one JSON file.
# Like ESP-IDF NVS: keys are at most 15 characters, a blob and an i32 are separate types, changes are kept in the
# object until commit(), and a missing key raises OSError(ENOENT) (esp32.NVS raises OSError with the ESP-IDF
# code ESP_ERR_NVS_NOT_FOUND there; callers should treat any OSError from a get as "missing").
import errno
import json
import os
from binascii import hexlify, unhexlify

FILE = "nvs.json"  # in the node's current folder
_KEY_MAX = 15  # ESP-IDF NVS_KEY_NAME_MAX_SIZE - 1


class NVS:
    def __init__(self, namespace, path=FILE):
        if not isinstance(namespace, str) or not 0 < len(namespace) <= _KEY_MAX:
            raise ValueError("namespace: 1..15 characters")
        self._ns = namespace
        self._path = path
        self._pending = {}  # key -> ["b", hex] | ["i", int] | None (erased)

    def _load(self):
        try:
            with open(self._path) as f:
                data = json.load(f)
        except OSError:
            return {}
        except ValueError:  # a torn or foreign file: the same as a blank NVS partition
            return {}
        return data if isinstance(data, dict) else {}

    def _get(self, key, kind):
        if key in self._pending:
            v = self._pending[key]
        else:
            v = self._load().get(self._ns, {}).get(key)
        if v is None or v[0] != kind:
            raise OSError(errno.ENOENT)
        return v[1]

    def _set(self, key, value):
        if not isinstance(key, str) or not 0 < len(key) <= _KEY_MAX:
            raise OSError(errno.EINVAL)
        self._pending[key] = value

    def set_i32(self, key, value):
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise OverflowError("i32")
        self._set(key, ["i", value])

    def get_i32(self, key):
        return self._get(key, "i")

    def set_blob(self, key, value):
        self._set(key, ["b", hexlify(bytes(value)).decode()])

    def get_blob(self, key, buffer):
        data = unhexlify(self._get(key, "b"))
        n = len(data)
        if len(buffer) < n:  # ESP-IDF: ESP_ERR_NVS_INVALID_LENGTH
            raise OSError(errno.EINVAL)
        buffer[:n] = data
        return n

    def erase_key(self, key):
        if key in self._pending:
            if self._pending[key] is None:
                raise OSError(errno.ENOENT)
        elif key not in self._load().get(self._ns, {}):
            raise OSError(errno.ENOENT)
        self._pending[key] = None

    def commit(self):
        if not self._pending:
            return
        data = self._load()
        ns = data.get(self._ns)
        if not isinstance(ns, dict):
            ns = {}
            data[self._ns] = ns
        for key in self._pending:
            v = self._pending[key]
            if v is None:
                if key in ns:
                    del ns[key]
            else:
                ns[key] = v
        tmp = self._path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(data))
        os.rename(tmp, self._path)  # atomic on POSIX: a power cut leaves the old or the new file
        self._pending = {}

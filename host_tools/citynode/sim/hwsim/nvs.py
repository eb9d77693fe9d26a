# A double of esp32.NVS (set_i32/get_i32/set_blob/get_blob/erase_key/commit) with commit-or-lose power cuts.
#
# Errors are those of the board: MicroPython's check_esp_err (ports/esp32/mphalport.c) raises
# OSError(-esp_err, name), so a missing key is OSError(-0x1102, "ESP_ERR_NVS_NOT_FOUND") (errno NOT_FOUND below),
# not ENOENT; callers should treat any OSError from a get as "missing". A key of the other type is missing too
# (ESP-IDF stores the type with the key). Values set and not committed are visible to every handle of the
# namespace and lost by power_cut(), the conservative reading of "remember to call commit".
# All handles share one module-level flash (use wipe() between tests), as all esp32.NVS objects share the partition.
NOT_FOUND = -0x1102  # ESP_ERR_NVS_NOT_FOUND
KEY_TOO_LONG = -0x1109  # ESP_ERR_NVS_KEY_TOO_LONG
INVALID_LENGTH = -0x110C  # ESP_ERR_NVS_INVALID_LENGTH
INVALID_NAME = -0x1106  # ESP_ERR_NVS_INVALID_NAME
_NAMES = {NOT_FOUND: "ESP_ERR_NVS_NOT_FOUND", KEY_TOO_LONG: "ESP_ERR_NVS_KEY_TOO_LONG",
          INVALID_LENGTH: "ESP_ERR_NVS_INVALID_LENGTH", INVALID_NAME: "ESP_ERR_NVS_INVALID_NAME"}
_KEY_MAX = 15  # NVS_KEY_NAME_MAX_SIZE - 1

_flash = {}  # namespace -> {key: (kind, value)}  committed
_pending = {}  # namespace -> {key: (kind, value) or None (erased)}
stats = {"commits": 0, "sets": 0}


def _err(code):
    return OSError(code, _NAMES[code])


def wipe():
    """Erase the whole simulated NVS partition."""
    _flash.clear()
    _pending.clear()
    stats["commits"] = 0
    stats["sets"] = 0


def power_cut():
    """Lose everything set but not committed."""
    _pending.clear()


def committed(namespace):
    """{key: int or bytes} as on flash (for tests)."""
    out = {}
    ns = _flash.get(namespace, {})
    for k in ns:
        out[k] = ns[k][1]
    return out


class NVS:
    def __init__(self, namespace):
        if not isinstance(namespace, str) or not 0 < len(namespace) <= _KEY_MAX:
            raise _err(INVALID_NAME)
        self._ns = namespace

    def _lookup(self, key, kind):
        p = _pending.get(self._ns)
        if p is not None and key in p:
            v = p[key]
        else:
            v = _flash.get(self._ns, {}).get(key)
        if v is None or v[0] != kind:
            raise _err(NOT_FOUND)
        return v[1]

    def _put(self, key, v):
        if not isinstance(key, str) or not 0 < len(key) <= _KEY_MAX:
            raise _err(KEY_TOO_LONG)
        p = _pending.get(self._ns)
        if p is None:
            p = {}
            _pending[self._ns] = p
        p[key] = v
        stats["sets"] += 1

    def set_i32(self, key, value):
        value = int(value)
        if not -0x80000000 <= value <= 0x7FFFFFFF:
            raise OverflowError("overflow converting long int to machine word")
        self._put(key, ("i", value))

    def get_i32(self, key):
        return self._lookup(key, "i")

    def set_blob(self, key, value):
        self._put(key, ("b", bytes(value)))

    def get_blob(self, key, buffer):
        data = self._lookup(key, "b")
        n = len(data)
        if n > len(buffer):
            raise _err(INVALID_LENGTH)
        buffer[:n] = data
        return n

    def erase_key(self, key):
        self._lookup(key, "i") if self._kind(key) == "i" else self._lookup(key, "b")
        self._put(key, None)

    def _kind(self, key):
        p = _pending.get(self._ns)
        v = p[key] if p is not None and key in p else _flash.get(self._ns, {}).get(key)
        return v[0] if v is not None else "b"

    def commit(self):
        p = _pending.pop(self._ns, None)
        stats["commits"] += 1
        if not p:
            return
        ns = _flash.get(self._ns)
        if ns is None:
            ns = {}
            _flash[self._ns] = ns
        for k in p:
            if p[k] is None:
                ns.pop(k, None)
            else:
                ns[k] = p[k]

# Node configuration with one precedence (defaults < board < /config.json < downlink) and the key store.
#
# Precedence, lowest first (docs/downlink.md, "Configuration"):
#   1. DEFAULTS below;
#   2. the board file's "settings" object (boards/<name>.json; the rest of a board file describes hardware);
#   3. the node's settings file /config.json (a JSON object of settings);
#   4. values set by downlink commands, kept in NVS namespace "cn_set" (ints and bools as i32, the channel
#      mask as an 8-byte little-endian blob "ch_off").
# Every value is validated (type and range); a bad one in layers 2-3 raises ValueError naming the setting;
# a bad one in NVS (e.g. written by older firmware) is ignored and listed in `warnings`.
# Keys (DevEUI, JoinEUI, AppKey) live only in NVS namespace "cn_keys" (blobs dev_eui, join_eui: 8 bytes,
# app_key: 16 bytes, MSB first as printed); on the unix port cnode.nvsfile.NVS stands in for esp32.NVS.
# Nothing here prints a key: redacted() is the view for logs.
import json
from micropython import const

from cnode.channels import CHANNELS

_INT = const(0)
_BOOL = const(1)
_MASK = const(2)

# name: (kind, lo, hi, default); _MASK: a set of registry channel ids (0..63) held as a bit mask
SETTINGS = {
    "interval": (_INT, 10, 86400, 300),  # seconds between measurements
    "dr": (_INT, 0, 5, 3),  # EU868 data rate used while ADR is off, and to start with
    "adr": (_BOOL, 0, 1, True),
    "channels_off": (_MASK, 0, 63, 0),  # channels not measured or sent
    "fport": (_INT, 1, 223, 2),  # uplink port of data frames
    "confirmed": (_BOOL, 0, 1, False),
    "batch": (_INT, 1, 128, 1),  # samples per uplink at most
    "deep_sleep": (_BOOL, 0, 1, True),  # deep sleep between cycles (cnode.runner.sleep_deep), else light sleep
}
DOWNLINK_SETTABLE = ("interval", "dr", "adr", "channels_off")
NVS_SETTINGS = "cn_set"
NVS_KEYS = "cn_keys"
_NVS_NAME = {"channels_off": "ch_off"}  # NVS keys are at most 15 characters
_CHANNEL_IDS = {}
for _row in CHANNELS:
    _CHANNEL_IDS[_row[1]] = _row[0]


def channel_id(ref):
    """Registry id of a channel given by name or id; ValueError if the registry has no such channel."""
    if isinstance(ref, str) and ref in _CHANNEL_IDS:
        return _CHANNEL_IDS[ref]
    if isinstance(ref, int) and not isinstance(ref, bool):
        for row in CHANNELS:
            if row[0] == ref:
                return ref
    raise ValueError("channels_off: no channel %r in the registry" % (ref,))


def validate(name, value):
    """The setting's value in canonical form (int, bool, or int mask), or ValueError naming the setting."""
    spec = SETTINGS.get(name)
    if spec is None:
        raise ValueError("unknown setting %r" % (name,))
    kind, lo, hi = spec[0], spec[1], spec[2]
    if kind == _BOOL:
        if value is True or value is False:
            return value
        raise ValueError("%s: must be true or false, not %r" % (name, value))
    if kind == _MASK:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < (1 << 64):
                raise ValueError("%s: mask out of range" % name)
            m = value
            for i in range(64):
                if m >> i & 1:
                    channel_id(i)
            return m
        if not isinstance(value, (list, tuple)):
            raise ValueError("%s: must be a list of channel names or ids" % name)
        m = 0
        for ref in value:
            m |= 1 << channel_id(ref)
        return m
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("%s: must be an integer, not %r" % (name, value))
    if not lo <= value <= hi:
        raise ValueError("%s: %d is outside %d..%d" % (name, value, lo, hi))
    return value


class Config:
    """Effective settings: cfg.get(name) / cfg[name]; cfg.source(name); cfg.set(name, v) for downlinks."""

    def __init__(self, board=None, fs=None, nvs=None, path="/config.json"):
        self.nvs = nvs  # esp32.NVS(NVS_SETTINGS) or a stand-in; None: downlink values are not kept
        self.path = path
        self.warnings = []
        self._values = {}
        self._base = {}  # value and source below the downlink layer
        self._src = {}
        self._buf = bytearray(8)
        for name in SETTINGS:
            self._base[name] = (SETTINGS[name][3], "default")
        if board is not None:
            self._layer(board.get("settings") or {}, "board")
        if fs is not None:
            self._layer(self._read_file(fs), "file")
        for name in SETTINGS:
            self._values[name], self._src[name] = self._base[name]
        if nvs is not None:
            for name in DOWNLINK_SETTABLE:
                v = self._nvs_get(nvs, name)
                if v is not None:
                    self._values[name] = v
                    self._src[name] = "downlink"

    def _layer(self, d, source):
        if not isinstance(d, dict):
            raise ValueError("%s settings: must be an object" % source)
        for name in d:
            self._base[name] = (validate(name, d[name]), source)

    def _read_file(self, fs):
        try:
            f = fs.open(self.path, "r")
        except OSError:
            return {}
        try:
            text = f.read()
        finally:
            f.close()
        try:
            d = json.loads(text)
        except ValueError:
            raise ValueError("%s: not valid JSON" % self.path)
        if not isinstance(d, dict):
            raise ValueError("%s: must be a JSON object" % self.path)
        return d

    def _nvs_get(self, nvs, name):
        key = _NVS_NAME.get(name, name)
        try:
            if SETTINGS[name][0] == _MASK:
                n = nvs.get_blob(key, self._buf)
                v = 0
                for i in range(n - 1, -1, -1):
                    v = (v << 8) | self._buf[i]
            elif SETTINGS[name][0] == _BOOL:
                v = nvs.get_i32(key) != 0
            else:
                v = nvs.get_i32(key)
        except OSError:  # not set (esp32.NVS: ESP_ERR_NVS_NOT_FOUND)
            return None
        try:
            return validate(name, v)
        except ValueError as e:
            self.warnings.append(str(e))
            return None

    def get(self, name):
        return self._values[name]

    def __getitem__(self, name):
        return self._values[name]

    def source(self, name):
        """Which layer the value comes from: default, board, file or downlink."""
        return self._src[name]

    def channel_enabled(self, cid):
        return not (self._values["channels_off"] >> cid) & 1

    def set(self, name, value, commit=True):
        """Downlink layer: validate, keep in NVS (commit unless told not to) and apply."""
        if name not in DOWNLINK_SETTABLE:
            raise ValueError("%s: cannot be set by downlink" % name)
        v = validate(name, value)
        nvs = self.nvs
        if nvs is not None:
            key = _NVS_NAME.get(name, name)
            if SETTINGS[name][0] == _MASK:
                for i in range(8):
                    self._buf[i] = (v >> (8 * i)) & 0xFF
                nvs.set_blob(key, self._buf)
            else:
                nvs.set_i32(key, int(v))
            if commit:
                nvs.commit()
        self._values[name] = v
        self._src[name] = "downlink"
        return v

    def clear(self, name):
        """Forget the downlink value of `name`: the lower layers apply again."""
        nvs = self.nvs
        if nvs is not None:
            try:
                nvs.erase_key(_NVS_NAME.get(name, name))
                nvs.commit()
            except OSError:
                pass
        self._values[name], self._src[name] = self._base[name]

    def redacted(self, keys=None):
        """Settings (with their source) and, if a Keys is given, its redacted view: safe for logs."""
        out = {}
        for name in SETTINGS:
            out[name] = self._values[name]
        out["sources"] = dict(self._src)
        if keys is not None:
            out["keys"] = keys.redacted()
        return out


_KEY_LEN = (("dev_eui", 8), ("join_eui", 8), ("app_key", 16))


def open_nvs(namespace):
    """esp32.NVS(namespace) on a board; the file-backed cnode.nvsfile.NVS on the unix port."""
    try:
        import esp32  # type: ignore

        return esp32.NVS(namespace)
    except ImportError:
        from cnode.nvsfile import NVS  # type: ignore

        return NVS(namespace)


def open_keystore():
    """The key store: NVS namespace "cn_keys"."""
    return open_nvs(NVS_KEYS)


class Keys:
    """The node's LoRaWAN identity. Values are bytes; repr() and redacted() never show a key."""

    def __init__(self, nvs=None):
        self.nvs = nvs if nvs is not None else open_keystore()
        self._buf = bytearray(16)

    def get(self, name):
        """The key `name` (dev_eui, join_eui, app_key) as bytes, or None if it is not provisioned."""
        want = 0
        for k, n in _KEY_LEN:
            if k == name:
                want = n
        if not want:
            raise ValueError("unknown key %r" % (name,))
        try:
            n = self.nvs.get_blob(name, self._buf)
        except OSError:
            return None
        if n != want:
            return None
        return bytes(self._buf[:n])

    def present(self):
        for k, _ in _KEY_LEN:
            if self.get(k) is None:
                return False
        return True

    def set(self, dev_eui, join_eui, app_key):
        vals = (dev_eui, join_eui, app_key)
        for i in range(3):
            name, n = _KEY_LEN[i]
            if not isinstance(vals[i], (bytes, bytearray)) or len(vals[i]) != n:
                raise ValueError("%s: must be %d bytes" % (name, n))
        for i in range(3):
            self.nvs.set_blob(_KEY_LEN[i][0], vals[i])
        self.nvs.commit()

    def redacted(self):
        """EUIs shortened to their last 2 bytes (enough to tell nodes apart in a log), the AppKey only set/missing."""
        out = {}
        for k, _ in _KEY_LEN:
            v = self.get(k)
            if v is None:
                out[k] = "missing"
            elif k == "app_key":
                out[k] = "set"
            else:
                out[k] = "..%02x%02x" % (v[-2], v[-1])
        return out

    def __repr__(self):
        return "<Keys %r>" % (self.redacted(),)

# A double of the ESP32 port's network.WLAN (station) as a node uses it, strict as the port (network_wlan.c).
#
# The access points in range are set with access_point(ssid, key, polls): connect() to one with the right key
# is associated after `polls` isconnected() calls (association and DHCP take a while); a wrong key ends in
# STAT_WRONG_PASSWORD, an unknown SSID in STAT_NO_AP_FOUND. Runs under CPython and the unix port.
STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_BEACON_TIMEOUT = 200
STAT_ASSOC_FAIL = STAT_CONNECT_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

_aps = {}  # ssid -> (key, polls)
_wlans = {}


def access_point(ssid, key, polls=3):
    """An access point in range (simulation side)."""
    _aps[ssid] = (key, polls)


def reset():
    _aps.clear()
    _wlans.clear()


def WLAN(interface_id=STA_IF):
    """The port keeps one WLAN object per interface."""
    if interface_id not in (STA_IF, AP_IF):
        raise ValueError("invalid WLAN interface identifier")
    w = _wlans.get(interface_id)
    if w is None:
        w = _wlans[interface_id] = _WLAN(interface_id)
    return w


class _WLAN:
    def __init__(self, interface_id):
        self._if = interface_id
        self._active = False
        self._status = STAT_IDLE
        self._left = 0

    def active(self, *args):
        if len(args) > 1:
            raise TypeError("extra positional arguments given")
        if args:
            self._active = bool(args[0])
            if not self._active:
                self._status = STAT_IDLE
            return None
        return self._active

    def connect(self, *args, **kw):
        """connect(ssid=None, key=None, *, bssid=None): ssid and key positional only."""
        if len(args) > 2:
            raise TypeError("extra positional arguments given")
        bssid = kw.pop("bssid", None)
        if kw:
            raise TypeError("extra keyword arguments given")
        if bssid is not None and len(bssid) != 6:
            raise ValueError()
        if not self._active:
            raise OSError("Wifi Not Started")
        ssid = args[0] if args else None
        key = args[1] if len(args) > 1 else None
        ap = _aps.get(ssid)
        if ap is None:
            self._status = STAT_NO_AP_FOUND
        elif ap[0] != (key or ""):
            self._status = STAT_WRONG_PASSWORD
        else:
            self._status = STAT_CONNECTING
            self._left = ap[1]

    def disconnect(self):
        self._status = STAT_IDLE

    def isconnected(self):
        if self._status == STAT_CONNECTING:
            self._left -= 1
            if self._left <= 0:
                self._status = STAT_GOT_IP
        return self._status == STAT_GOT_IP

    def status(self, *args):
        if args:
            if args[0] != "rssi":
                raise ValueError("unknown status param")
            if self._status != STAT_GOT_IP:
                raise OSError("Wifi Not Connected")
            return -60
        return self._status

# Persistence interface of the MAC (ints and blobs by short key, NVS-style) and a dict-backed store for tests.
#
# The MAC calls get_int/set_int/get_blob/set_blob/commit with keys of at most 15 characters (the ESP32 NVS
# key limit); a board maps them to esp32.NVS. Writes are counted so tests can check flash wear.
# Keys: "dn" next DevNonce (written before each join-request), "jn" last accepted JoinNonce, "fu" FCntUp bound
# (written once per FCNT_PERSIST_EVERY frames), "fd" next FCntDown (written per accepted downlink), "ss" the
# session blob (210 B: DevAddr, keys, RX settings, DR/power/NbTrans, channel plan, then the DevEUI and JoinEUI
# it belongs to; written on join and when a MAC command changes it), "_ans" the MAC answers owed (4 B sticky
# RXParamSetup/RXTimingSetup/DlChannel status and confirmed-downlink ACK, then the one-shot answers; written by
# a downlink that asks, rewritten once the answers went out). A node that deep-sleeps between uplinks reboots each time: back "fu" with RTC
# memory (falling back to NVS on power-on) or it skips up to FCNT_PERSIST_EVERY counts per wake.


class DictStore:
    def __init__(self, d=None):
        self.d = {} if d is None else d
        self.writes = 0
        self.commits = 0

    def get_int(self, key, default=0):
        v = self.d.get(key)
        return default if v is None else v

    def set_int(self, key, value):
        self.d[key] = int(value)
        self.writes += 1

    def get_blob(self, key):
        v = self.d.get(key)
        return None if v is None else bytes(v)

    def set_blob(self, key, data):
        self.d[key] = bytes(data)
        self.writes += 1

    def commit(self):
        self.commits += 1

# The MAC's persistence interface (get_int/set_int/get_blob/set_blob/commit) over an esp32.NVS namespace.
#
# On a board pass esp32.NVS("cn_mac"); on the unix port cnode.nvsfile.NVS has the same methods. Blobs are at
# most 256 bytes here (the MAC stores session keys and channel plans).


class NvsStore:
    def __init__(self, nvs):
        self.nvs = nvs
        self._buf = bytearray(256)

    def get_int(self, key, default=0):
        try:
            return self.nvs.get_i32(key)
        except OSError:
            return default

    def set_int(self, key, value):
        self.nvs.set_i32(key, value)

    def get_blob(self, key):
        try:
            n = self.nvs.get_blob(key, self._buf)
        except OSError:
            return None
        return bytes(self._buf[:n])

    def set_blob(self, key, data):
        if len(data) > len(self._buf):
            raise ValueError("blob too long for the store")
        self.nvs.set_blob(key, data)

    def commit(self):
        self.nvs.commit()

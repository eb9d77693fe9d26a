# BLE advertisement counter for pedestrian flow: distinct devices per window, never storing an address.
#
# Privacy design (counts only): each scan result's address is replaced at once by a keyed hash,
# HMAC-SHA256(salt, addr_type || addr) truncated to HASH_LEN bytes (RFC 2104, written here over
# hashlib.sha256). The salt is 16 random bytes from os.urandom, replaced every UTC day (clock.time() // 86400);
# the old salt is overwritten in place, so hashes of different days cannot be linked, not even by someone
# who later reads the node's RAM. The distinct set is a preallocated open-addressing table of truncated
# hashes; it is wiped at the end of every window. When it is full the count saturates (flag out_of_range).
# Optional k-anonymity: a window with fewer than k_min devices reports 0 (flag out_of_range too; see flags).
# Phones rotate random addresses (every ~15 min), so the count is of advertising identities, an upper bound.
#
# Feed it from the BLE IRQ (event 5 = _IRQ_SCAN_RESULT, data = (addr_type, addr, adv_type, rssi, adv_data)):
#   ble.irq(counter.irq); ble.gap_scan(0, 1280000, 11250)    # then counter.read() once per window
# The BLE IRQ handler runs synchronously in the NimBLE task on the ESP32 (not a hard IRQ), so hashing (which
# allocates) is allowed there.
import hashlib

from micropython import const

from cnode.channels import F_OUT_OF_RANGE

_IRQ_SCAN_RESULT = const(5)
HASH_LEN = const(8)
SALT_LEN = const(16)
_BLOCK = const(64)  # SHA-256 block size (RFC 2104 B)
FLAG_SATURATED = const(1)  # .why bits: which rule set the out_of_range flag
FLAG_SUPPRESSED = const(2)


def key_pads(key, ipad, opad):
    """Fill the 64-byte HMAC pads for key (len <= 64): K ^ 0x36.., K ^ 0x5c.. (RFC 2104 section 2)."""
    n = len(key)
    if n > _BLOCK:
        raise ValueError("HMAC key longer than a block")
    for i in range(_BLOCK):
        k = key[i] if i < n else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C


def _urandom(n):
    import os

    return os.urandom(n)


class BleCounter:
    def __init__(self, clock, capacity=256, rssi_min=-85, k_min=0, urandom=None):
        if capacity < 1:
            raise ValueError("capacity < 1")
        self.channels = ("pedestrians",)
        self.values = [None]  # type: list
        self._clock = clock
        self._rand = urandom if urandom is not None else _urandom
        self.capacity = capacity
        self.rssi_min = rssi_min
        self.k_min = k_min
        self._table = bytearray(capacity * HASH_LEN)
        self._used = bytearray(capacity)
        self._ipad = bytearray(_BLOCK)
        self._opad = bytearray(_BLOCK)
        self._msg = bytearray(7)  # addr_type || addr: the only place an address is ever copied to
        self._day = -1
        self.count = 0  # distinct identities in the current window
        self.seen = 0  # scan results accepted (above the RSSI threshold) in the window
        self.weak = 0  # scan results below rssi_min in the window
        self.saturated = False
        self.flags = 0
        self.why = 0
        self._rotate()

    # --- salt ------------------------------------------------------------------------------------
    def _rotate(self):
        """New random salt for the current day; the old one (and its key pads) is overwritten in place."""
        salt = bytearray(self._rand(SALT_LEN))
        key_pads(salt, self._ipad, self._opad)  # the pads are the only copy kept; old pads overwritten
        for i in range(SALT_LEN):
            salt[i] = 0
        self._day = self._clock.time() // 86400

    def _hmac(self, data):
        """HMAC-SHA256 with the current salt (RFC 2104: H(K^opad || H(K^ipad || data)))."""
        h = hashlib.sha256(self._ipad)
        h.update(data)
        inner = h.digest()
        h = hashlib.sha256(self._opad)
        h.update(inner)
        return h.digest()

    # --- scan results ----------------------------------------------------------------------------
    def irq(self, event, data):
        """bluetooth.BLE().irq handler: counts event 5, ignores the rest."""
        if event == _IRQ_SCAN_RESULT:
            self.add(data[0], data[1], data[3])

    def add(self, addr_type, addr, rssi):
        """Count one advertisement; True if its device is new in this window."""
        if rssi < self.rssi_min:
            self.weak += 1
            return False
        self.seen += 1
        m = self._msg
        m[0] = addr_type & 0xFF
        for i in range(6):
            m[1 + i] = addr[i]
        d = self._hmac(m)
        for i in range(7):
            m[i] = 0
        return self._insert(d)

    def _insert(self, d):
        cap = self.capacity
        t = self._table
        used = self._used
        slot = ((d[0] << 16) | (d[1] << 8) | d[2]) % cap
        for _ in range(cap):
            o = slot * HASH_LEN
            if not used[slot]:
                if self.count >= cap:
                    break
                for i in range(HASH_LEN):
                    t[o + i] = d[i]
                used[slot] = 1
                self.count += 1
                return True
            same = True
            for i in range(HASH_LEN):
                if t[o + i] != d[i]:
                    same = False
                    break
            if same:
                return False
            slot += 1
            if slot == cap:
                slot = 0
        self.saturated = True  # table full: this device may be new but cannot be told apart
        return False

    # --- window ----------------------------------------------------------------------------------
    def read(self):
        """Close the window: values[0] = distinct devices (0 if fewer than k_min), then wipe the set."""
        n = self.count
        self.why = 0
        if self.saturated:
            self.why |= FLAG_SATURATED
        if n < self.k_min:
            n = 0
            self.why |= FLAG_SUPPRESSED
        self.flags = F_OUT_OF_RANGE if self.why else 0
        self.values[0] = n
        t = self._table
        for i in range(len(t)):
            t[i] = 0
        u = self._used
        for i in range(len(u)):
            u[i] = 0
        self.count = 0
        self.seen = 0
        self.weak = 0
        self.saturated = False
        if self._clock.time() // 86400 != self._day:
            self._rotate()
        return n

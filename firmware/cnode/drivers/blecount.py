# BLE advertisement counter for pedestrian flow: distinct devices per window, never storing an address.
#
# What it keeps (docs/privacy.md explains it for a data-protection officer):
# - An address lives only in the scan result the BLE stack hands to irq() and in self._msg, which add()
#   overwrites with zeros once the address is hashed. The driver keeps no address.
# - The hash is HMAC-SHA256(salt, addr_type || addr) (RFC 2104, written here over hashlib.sha256), truncated
#   to HASH_LEN bytes. The salt is SALT_LEN random bytes from os.urandom, drawn at construction and again in
#   start() (so at every boot), and at the first window close in a new day of the node's clock
#   (clock.time() // 86400: a UTC day once the network or the GPS has set the clock): a salt lives at most a
#   day plus one window. Only its HMAC pads are kept, in RAM; each new salt overwrites them in place, and none
#   is ever written to flash or RTC memory. Hashes of different days (or boots) cannot be linked.
# - The distinct set is a preallocated open-addressing table of truncated hashes, wiped by read() at the end
#   of every window. When it is full the count saturates (flag out_of_range, why FLAG_SATURATED).
# - Not wiped: copies the interpreter makes and frees (the bytes os.urandom returns, the digests hashlib
#   returns, the BLE stack's own buffers) stay in free RAM until it is reused. Only someone reading the chip's
#   RAM could see them; nothing of them leaves the node.
# k-anonymity (on by default, k_min = K_MIN = 5): a window with fewer than k_min distinct devices, none
# included, reports 0 with the out_of_range flag (why FLAG_SUPPRESSED): a count of 0 to k_min - 1 cannot be
# told apart from an empty window. A window of k_min or more reports its count unchanged.
# Phones rotate random addresses (about every 15 min), so the count is of advertising identities, an index of
# pedestrian flow and not a number of people.
#
# start(ble) runs a passive scan (the node sends nothing to the devices, not even scan requests) forever on
# bluetooth.BLE(); read() once per window. The BLE IRQ handler runs synchronously in the NimBLE task on the
# ESP32 (not a hard IRQ), so hashing (which allocates) is allowed there; it can run while read() closes a
# window (the GIL switches between threads), so read() marks the window closing, waits for an add() in
# progress to finish, and add() drops what arrives meanwhile (counted in .dropped).
import hashlib

from micropython import const

from cnode.channels import F_OUT_OF_RANGE

_IRQ_SCAN_RESULT = const(5)
HASH_LEN = const(8)
SALT_LEN = const(16)
_BLOCK = const(64)  # SHA-256 block size (RFC 2104 B)
FLAG_SATURATED = const(1)  # .why bits: which rule set the out_of_range flag
FLAG_SUPPRESSED = const(2)
K_MIN = const(5)  # default k: windows with fewer distinct devices report 0, flagged
# Default scan: a 30 ms window every 300 ms (10 % duty; both multiples of the 0.625 ms HCI unit). With the port's
# own default (11.25 ms every 1.28 s) an advertising event falls in a window about once in 114 (the ratio of
# the two), so a phone advertising once a second and in range for 30 s would be missed about 3 times in 4;
# at 10 % about once in 24. (An estimate from the ratio, not a measurement.)
SCAN_INTERVAL_US = const(300000)
SCAN_WINDOW_US = const(30000)
_CLOSE_WAIT_MS = const(50)  # read() waits at most this long for an add() in progress (one HMAC and a lookup)


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
    keeps_count_in_ram = True  # the window's set lives in RAM between reads: deep sleep would lose it

    def __init__(self, clock, capacity=256, rssi_min=-85, k_min=K_MIN, urandom=None):
        if capacity < 1:
            raise ValueError("capacity < 1")
        if not 0 <= k_min <= capacity:
            raise ValueError("k_min must be 0..capacity")
        self.channels = ("pedestrians",)
        self.values = [None]  # type: list
        self._clock = clock
        self._rand = urandom if urandom is not None else _urandom
        self.capacity = capacity
        self.rssi_min = rssi_min
        self.k_min = k_min  # 0 or 1: every count is reported as it is
        self._table = bytearray(capacity * HASH_LEN)
        self._used = bytearray(capacity)
        self._ipad = bytearray(_BLOCK)
        self._opad = bytearray(_BLOCK)
        self._msg = bytearray(7)  # addr_type || addr: the only place an address is ever copied to
        self._day = -1
        self._busy = False  # an add() is running (in the BLE task)
        self._closing = False  # read() is closing the window: add() drops what arrives
        self._ble = None
        self._handler = self.irq  # bound method made once, given to ble.irq
        self.count = 0  # distinct identities in the current window
        self.seen = 0  # scan results accepted (above the RSSI threshold) in the window
        self.weak = 0  # scan results below rssi_min in the window
        self.dropped = 0  # scan results that arrived while the previous window was being closed
        self.saturated = False
        self.flags = 0
        self.why = 0
        self._rotate()

    # --- scanning --------------------------------------------------------------------------------
    def start(self, ble, interval_us=SCAN_INTERVAL_US, window_us=SCAN_WINDOW_US):
        """Scan passively, forever, on `ble` (bluetooth.BLE()) and count what it hears, with a salt drawn once the
        radio is on. A scan a previous start left running is stopped first (gap_scan(None) is a no-op when none
        runs)."""
        if not 0 < window_us <= interval_us:
            raise ValueError("scan window must be 1..interval us")
        ble.active(True)
        self._rotate()  # again, radio on: the ESP32's RNG is a true RNG only while Wi-Fi or BT runs (ESP-IDF)
        ble.gap_scan(None)
        ble.irq(self._handler)
        ble.gap_scan(0, interval_us, window_us)  # active=False: no scan requests are sent
        self._ble = ble

    def stop(self):
        ble = self._ble
        if ble is not None:
            ble.gap_scan(None)
            ble.irq(None)
            self._ble = None

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
        """Count one advertisement; True if its device is new in this window (False while read() closes one)."""
        self._busy = True
        try:
            if self._closing:
                self.dropped += 1
                return False
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
        finally:
            self._busy = False

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
        """Close the window: values[0] = its distinct devices, or 0 with out_of_range (why FLAG_SUPPRESSED) when
        there were fewer than k_min, an empty window included; capacity with out_of_range (FLAG_SATURATED) when
        the table filled. Then wipe the set (and draw a new salt on a new day)."""
        self._closing = True
        try:
            waited = 0
            while self._busy and waited < _CLOSE_WAIT_MS:  # an add() in the BLE task: let it finish
                self._clock.sleep_ms(1)
                waited += 1
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
        finally:
            self._closing = False
        return n

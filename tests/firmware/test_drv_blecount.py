# BLE counter tests: HMAC vectors, distinct counting, RSSI, saturation, k-suppression (on by default), passive
# scanning, a window closing while the BLE task adds, salt rotation, privacy.
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.twin_mobility import BleCrowd
from cnode.channels import F_OUT_OF_RANGE
from cnode.drivers.blecount import (BleCounter, key_pads, HASH_LEN, FLAG_SATURATED, FLAG_SUPPRESSED, K_MIN,
                                    SCAN_INTERVAL_US, SCAN_WINDOW_US)
from fwtest import tohex, raises


class Rand:
    """Deterministic stand-in for os.urandom: a different 16-byte salt on every call."""

    def __init__(self):
        self.n = 0

    def __call__(self, k):
        self.n += 1
        return bytes((self.n * 37 + i * 11) & 0xFF for i in range(k))


def _counter(**kw):
    clk = VirtualClock(start_s=9000 * 86400)
    return clk, BleCounter(clk, urandom=Rand(), **kw)


def _addr(i):
    return bytes((0xC0 | (i >> 8) & 0x3F, 0x11, 0x22, 0x33, i & 0xFF, 0xA5))


def test_hmac_sha256_rfc4231_vectors():
    clk, c = _counter()
    key_pads(b"\x0b" * 20, c._ipad, c._opad)  # RFC 4231 test case 1
    assert tohex(c._hmac(b"Hi There")) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    key_pads(b"Jefe", c._ipad, c._opad)  # test case 2
    assert tohex(c._hmac(b"what do ya want for nothing?")) == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    raises(ValueError, key_pads, bytes(65), c._ipad, c._opad)


def test_same_device_counts_once_per_window():
    clk, c = _counter()
    crowd = BleCrowd()
    for i in range(40):
        crowd.add(1, _addr(i), -60)
    crowd.add(0, _addr(3), -60)  # same bytes, public address type: another device
    delivered = crowd.scan(c.irq, 0, 10000, every_ms=1000)  # every device heard 10 times
    assert delivered == 410
    assert c.seen == 410
    assert c.read() == 41
    assert c.values == [41]
    assert c.flags == 0
    assert c.count == 0  # the window is wiped
    assert c.read() == 0


def test_rssi_threshold_and_other_events():
    clk, c = _counter(rssi_min=-80)
    c.irq(5, (1, memoryview(_addr(1)), 0, -81, memoryview(b"")))
    c.irq(5, (1, memoryview(_addr(2)), 0, -80, memoryview(b"")))
    c.irq(6, None)  # _IRQ_SCAN_DONE is ignored
    assert c.weak == 1
    assert c.count == 1


def test_saturation_flagged():
    clk, c = _counter(capacity=16)
    for i in range(30):
        c.add(1, _addr(i), -50)
    for i in range(16):  # already stored ones are still recognised when full
        c.add(1, _addr(i), -50)
    assert c.count == 16
    assert c.read() == 16
    assert c.flags == F_OUT_OF_RANGE and c.why == FLAG_SATURATED
    for i in range(5):
        c.add(1, _addr(i), -50)
    assert c.read() == 5 and c.flags == 0


def test_k_suppression():
    clk, c = _counter(k_min=5)
    for i in range(4):
        c.add(1, _addr(i), -50)
    assert c.read() == 0
    assert c.flags == F_OUT_OF_RANGE and c.why == FLAG_SUPPRESSED
    for i in range(5):
        c.add(1, _addr(i), -50)
    assert c.read() == 5 and c.flags == 0


def test_k_anonymity_is_on_by_default():
    # issue 14: the counter shipped with k_min 0, so a window with one phone in it reported 1
    clk, c = _counter()
    assert c.k_min == K_MIN == 5
    c.add(1, _addr(1), -50)
    assert c.read() == 0 and c.values == [0]
    assert c.flags == F_OUT_OF_RANGE and c.why == FLAG_SUPPRESSED
    for i in range(4):
        c.add(1, _addr(i), -50)
    assert c.read() == 0 and c.flags == F_OUT_OF_RANGE
    for i in range(5):
        c.add(1, _addr(i), -50)
    assert c.read() == 5 and c.values == [5] and c.flags == 0 and c.why == 0


def test_below_k_reads_exactly_as_an_empty_window():
    # 0, 1 .. k-1 devices: the same value, flags and reason, so a reading cannot tell them apart
    seen = []
    for n in range(K_MIN):
        clk, c = _counter()
        for i in range(n):
            c.add(1, _addr(i), -50)
        seen.append((c.read(), list(c.values), c.flags, c.why))
    assert seen == [(0, [0], F_OUT_OF_RANGE, FLAG_SUPPRESSED)] * K_MIN


def test_k_can_be_set_and_turned_off():
    clk, c = _counter(k_min=10)
    for i in range(9):
        c.add(1, _addr(i), -50)
    assert c.read() == 0 and c.why == FLAG_SUPPRESSED
    clk, c = _counter(k_min=0)  # off: every count as it is, an empty window unflagged
    assert c.read() == 0 and c.flags == 0
    c.add(1, _addr(1), -50)
    assert c.read() == 1 and c.flags == 0
    raises(ValueError, BleCounter, clk, k_min=-1)
    raises(ValueError, BleCounter, clk, capacity=4, k_min=5)  # every window would be suppressed


class FakeBle:
    """Records the calls a driver makes on bluetooth.BLE() (the port's call signatures: positional only)."""

    def __init__(self):
        self.calls = []
        self.handler = None

    def active(self, *a):
        self.calls.append(("active",) + a)

    def irq(self, h):
        self.calls.append(("irq", h is not None))
        self.handler = h

    def gap_scan(self, *a):
        self.calls.append(("gap_scan",) + a)


def test_start_scans_passively_forever_and_stop_ends_it():
    clk, c = _counter()
    ble = FakeBle()
    pads = bytes(c._ipad)
    c.start(ble)
    assert bytes(c._ipad) != pads  # a new salt, drawn once the radio is on (the ESP32's RNG needs it)
    # active=False (the port's default, not passed): no scan request ever goes to a device
    assert ble.calls == [("active", True), ("gap_scan", None), ("irq", True),
                         ("gap_scan", 0, SCAN_INTERVAL_US, SCAN_WINDOW_US)]
    assert (SCAN_INTERVAL_US, SCAN_WINDOW_US) == (300000, 30000)
    assert SCAN_INTERVAL_US % 625 == 0 and SCAN_WINDOW_US % 625 == 0  # whole HCI units
    for i in range(6):
        ble.handler(5, (1, memoryview(_addr(i)), 0, -60, memoryview(b"")))
    assert c.read() == 6
    c.stop()
    assert ble.calls[-2:] == [("gap_scan", None), ("irq", False)]
    c.start(FakeBle(), 1280000, 11250)
    raises(ValueError, c.start, FakeBle(), 10000, 20000)  # a window longer than the interval


class _BleTask:
    """A clock whose sleep_ms lets the 'BLE task' run: it finishes the add() it was in the middle of, then
    another advertisement arrives (while read() is still closing the window)."""

    def __init__(self, clk):
        self.clk = clk
        self.c = None
        self.slept = 0

    def time(self):
        return self.clk.time()

    def sleep_ms(self, ms):
        self.slept += ms
        c = self.c
        c._busy = False  # the add() in progress ends
        assert c.add(1, _addr(99), -50) is False  # arrives during the close: dropped, not counted
        assert not any(c._msg)


def test_an_advertisement_during_the_window_close_is_dropped_not_kept():
    clk = VirtualClock(start_s=9000 * 86400)
    task = _BleTask(clk)
    c = BleCounter(task, urandom=Rand())
    task.c = c
    for i in range(6):
        c.add(1, _addr(i), -50)
    c._busy = True  # the BLE task was interrupted inside add(): read() must wait for it
    assert c.read() == 6
    assert task.slept >= 1 and c.dropped == 1
    assert not any(c._table) and not any(c._used) and c.count == 0  # nothing of it in the next window
    assert c.add(1, _addr(99), -50) is True  # after the close, the next window counts again


def _stored_hashes(c):
    out = []
    for s in range(c.capacity):
        if c._used[s]:
            out.append(bytes(c._table[s * HASH_LEN:(s + 1) * HASH_LEN]))
    return out


def _all_state_bytes(c):
    """Every bytes-like value reachable from the counter's attributes (one level of lists/tuples)."""
    out = []
    for name in dir(c):
        if name.startswith("__"):
            continue
        v = getattr(c, name)
        if isinstance(v, (list, tuple)):
            for x in v:
                if isinstance(x, (bytes, bytearray, memoryview)):
                    out.append(bytes(x))
        elif isinstance(v, (bytes, bytearray, memoryview)):
            out.append(bytes(v))
    return out


def test_no_address_bytes_kept_in_any_state():
    clk, c = _counter()
    addrs = [_addr(i) for i in range(50)]
    for a in addrs:
        c.add(1, memoryview(a), -50)
    during = _all_state_bytes(c)
    c.read()
    after = _all_state_bytes(c)
    assert len(after) >= 4  # table, used, pads, message buffer at least
    for blob in during + after:
        for a in addrs:
            assert a not in blob
            assert a[1:5] not in blob  # not even a 4-byte piece of one
    assert not any(c._table) and not any(c._msg)


def test_salt_rotates_daily_and_hashes_differ():
    clk, c = _counter()
    a = _addr(7)
    c.add(1, a, -50)
    day1 = _stored_hashes(c)
    pads1 = bytes(c._ipad)
    c.read()
    c.add(1, a, -50)
    assert _stored_hashes(c) == day1  # same day: same salt, same hash
    c.read()
    clk.advance_ms(86400 * 1000)  # next UTC day: the window closing after midnight rotates the salt
    c.read()
    assert bytes(c._ipad) != pads1
    c.add(1, a, -50)
    day2 = _stored_hashes(c)
    assert len(day2) == 1 and day2 != day1
    # the old key material is gone from the object (no copy of the old pads anywhere)
    for blob in _all_state_bytes(c):
        assert pads1[:16] not in blob


def test_new_salt_at_every_start():
    clk = VirtualClock(start_s=5 * 86400)
    r = Rand()
    c1 = BleCounter(clk, urandom=r)
    c2 = BleCounter(clk, urandom=r)
    c1.add(1, _addr(1), -50)
    c2.add(1, _addr(1), -50)
    assert _stored_hashes(c1) != _stored_hashes(c2)


def test_default_salt_source_is_os_urandom():
    clk = VirtualClock(start_s=5 * 86400)
    c1 = BleCounter(clk)
    c2 = BleCounter(clk)
    assert bytes(c1._ipad) != bytes(c2._ipad)
    assert c1.add(1, _addr(1), -50) and not c1.add(1, _addr(1), -50)

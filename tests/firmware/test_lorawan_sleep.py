# The MAC across deep sleep: every wake builds a new Mac from NVS plus what pack() left in RTC memory, and
# must behave like one Mac that never slept (ADR back-off, answers owed, duty cycle, join trials, FCnt, time).
import struct

from fwtest import Lcg, raises

from citynode.sim import netserver as NS
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air, SimModem
from cnode.lorawan import DutyCycleError, JoinFailed
from cnode.lorawan.mac import Mac
from cnode.lorawan.region import BANDS, band_of
from cnode.lorawan.store import DictStore
from test_lorawan_mac import APP_KEY, DEV_EUI, JOIN_EUI

SLEEP_MS = 300000


class _FarGateway(NS.Gateway):
    """A gateway that hears only spreading factors from sf_min up: the node is out of range below it."""

    def __init__(self, server, sf_min):
        self.sf_min = sf_min
        NS.Gateway.__init__(self, server, 0)

    def hear(self, tx):
        if tx.sf >= self.sf_min:
            NS.Gateway.hear(self, tx)


class Board:
    """One node that deep-sleeps: NVS (store) and RTC memory survive, the Mac object does not."""

    def __init__(self, ns_kw=None, gateway_sf_min=7):
        self.clock = VirtualClock()
        self.air = Air(self.clock)
        self.ns = NS.NetworkServer(self.air, **(ns_kw or {}))
        _FarGateway(self.ns, gateway_sf_min)
        self.dev = self.ns.add_device(DEV_EUI, APP_KEY, JOIN_EUI)
        self.store = DictStore()
        self.modem = SimModem(self.air)
        self.rng = Lcg(3)
        self.rtc = b""
        self.wakes = 0

    def wake(self):
        self.wakes += 1
        m = Mac(self.modem, self.clock, self.store, DEV_EUI, JOIN_EUI, APP_KEY,
                rand=lambda n: self.rng.next() % n if n > 0 else 0, battery=lambda: 200)
        m.unpack(self.rtc)
        return m

    def sleep(self, m, ms=SLEEP_MS):
        self.rtc = bytes(m.pack(ms))
        assert len(self.rtc) <= 2048  # RTC memory (machine.RTC().memory) holds at most 2048 bytes
        self.clock.sleep_ms(ms)

    def ups(self):
        return [t for t in self.air.log if t.source == "node"]


def _joined(b):
    m = b.wake()
    assert m.join()
    b.sleep(m)
    return b


def test_adr_ack_req_and_backoff_across_deep_sleep_and_fcnt_never_skips():
    b = _joined(Board())
    b.ns._send = lambda *a, **k: None  # the network stays silent: no downlink resets ADR_ACK_CNT
    drs = []
    for _ in range(64 + 32 + 1):
        m = b.wake()
        m.send(2, b"x")
        drs.append(m.dr)
        b.sleep(m)
    frames = [t.data for t in b.ups()[1:]]
    fctrl = [f[5] for f in frames]
    assert [struct.unpack_from("<H", f, 6)[0] for f in frames] == list(range(len(frames)))  # no count skipped
    assert all(c & 0x40 == 0 for c in fctrl[:64]) and all(c & 0x40 for c in fctrl[64:])  # ADRACKReq at 64
    assert drs[64 + 32 - 2] == 5 and drs[64 + 32 - 1] == 4  # ADR_ACK_DELAY later: one DR lower (TX power default)
    assert b.ups()[-1].sf == 8


def test_mac_requests_answered_in_the_next_uplink_after_deep_sleep():
    b = _joined(Board())
    b.ns.queue_mac(DEV_EUI, NS.dev_status_req())
    b.ns.queue_mac(DEV_EUI, NS.rx_param_setup_req(1, 3, 869525))
    b.ns.queue_downlink(DEV_EUI, 5, b"hi")
    m = b.wake()
    m.send(2, b"a")  # the downlink with both requests arrives in RX1
    assert m.rx2_dr == 3 and m.rx1_dr_offset == 1
    b.sleep(m)
    m = b.wake()
    m.send(2, b"b")
    cids = [c for c, _ in b.dev.answers]
    assert 0x06 in cids and 0x05 in cids  # DevStatusAns and RXParamSetupAns, in the first uplink after waking
    assert dict(b.dev.answers)[0x05] == b"\x07"
    assert (b.dev.rx2_dr, b.dev.rx1_dr_offset) == (3, 1)  # device and server agree


def _asked(b):
    """A joined board whose next uplink brings a downlink asking DevStatusReq, LinkADRReq and RXParamSetupReq;
    returns the Mac and what the node put in RTC memory just before that uplink (cnode.app: pack(-1))."""
    b.ns.queue_mac(DEV_EUI, NS.dev_status_req())
    b.ns.queue_mac(DEV_EUI, NS.link_adr_req(5, 15, 0x0007))
    b.ns.queue_mac(DEV_EUI, NS.rx_param_setup_req(1, 3, 869525))
    m = b.wake()
    before = bytes(m.pack(-1))
    m.send(2, b"a")
    assert m.rx2_dr == 3
    return m, before


def _answers_in(frame):
    return frame.data[5] & 0x0F, bytes(frame.data[8:8 + (frame.data[5] & 0x0F)])


def test_answers_owed_survive_a_power_cut_and_a_reset_before_the_sleep():
    """RTC memory is lost in a power cut, and a watchdog reset can come before pack(): the answers a downlink
    asked for are in flash ("_ans"), so the first uplink after either carries them, the one after only the sticky
    RXParamSetupAns, and the flash is written once per asking downlink and once after the answers went out."""
    for lose in ("power cut", "reset before the sleep"):
        b = _joined(Board())
        m, before = _asked(b)
        writes = b.store.writes
        b.rtc = b"" if lose == "power cut" else before  # RTC memory lost, or as it was before the uplink
        m = b.wake()
        assert m.rx2_dr == 3  # the session in flash has the new RX2 settings
        b.dev.answers.clear()
        b.ns._send = lambda *a, **k: None  # the server stays silent: the sticky answer repeats
        m.send(2, b"b")
        assert sorted(c for c, _ in b.dev.answers) == [0x03, 0x05, 0x06], lose
        assert dict(b.dev.answers)[0x05] == b"\x07" and dict(b.dev.answers)[0x03] == b"\x07"
        assert (b.dev.rx2_dr, b.dev.rx1_dr_offset) == (3, 1)
        # no downlink came: the next uplink, after another cut, repeats the sticky answer only
        b.rtc = b""
        m = b.wake()
        b.dev.answers.clear()
        m.send(2, b"c")
        assert [c for c, _ in b.dev.answers] == [0x05], lose
        fcnts = [struct.unpack_from("<H", t.data, 6)[0] for t in b.ups()[1:]]
        assert fcnts == sorted(set(fcnts)), (lose, fcnts)  # no FCnt reused after the reset
        assert b.ns.rejected == [], lose
        assert b.store.writes - writes <= 3 + 2  # "_ans" after the answers went out; "fu"/"ss" after the resets


def test_a_downlink_that_asks_nothing_clears_what_flash_owed_and_a_new_join_voids_it():
    b = _joined(Board())
    m, _ = _asked(b)
    m.send(2, b"b")  # answers go out; the server's downlink clears the sticky one
    assert b.store.get_blob("_ans") == b"\xff\x00\xff\x00"
    b.sleep(m)
    b.ns.queue_mac(DEV_EUI, NS.dev_status_req())
    m = b.wake()
    m.send(2, b"c")
    assert b.store.get_blob("_ans")[4] == 0x06
    writes = b.store.writes
    b.rtc = b""
    m = b.wake()
    m.join()  # a new session: nothing is owed to the old one
    assert b.store.get_blob("_ans") == b"\xff\x00\xff\x00"
    b.dev.answers.clear()
    m.send(2, b"d")
    assert b.dev.answers == [] and b.store.writes > writes


def test_duty_cycle_ledger_survives_deep_sleep():
    b = _joined(Board())
    sent = 0
    for _ in range(120):  # wake every 20 s for 40 min, a 51-byte frame at DR0 (2.5 s on air) each time
        m = b.wake()
        m.dr = 0
        try:
            m.send(2, bytes(51))
            sent += 1
        except DutyCycleError:
            pass
        b.sleep(m, 20000)
    ups = [t for t in b.ups()[1:]]
    assert 0 < sent < 120
    for u in ups:  # over any sliding hour ending at a frame's start, each band within its limit
        band = band_of(u.freq_khz)
        used = sum(v.end_us - v.start_us for v in ups
                   if band_of(v.freq_khz) == band and u.start_us - 3600000000 < v.start_us <= u.start_us)
        assert used <= 3600000000 // BANDS[band][2] + 1000 * len(ups)  # limit, ms rounding per frame


def test_join_steps_down_to_sf12_across_wakes_and_backs_off():
    b = Board(gateway_sf_min=12)  # the only gateway hears SF12 only
    t0 = b.clock.monotonic_ms()
    joined = None
    for _ in range(100):
        m = b.wake()
        try:
            m.join(1, 30000)
            joined = m
            break
        except (JoinFailed, DutyCycleError):
            pass
        b.sleep(m)
    assert joined is not None and joined.dr == 0  # the DR the accept came on
    jr = [t for t in b.ups() if t.data[0] == 0]
    assert [t.sf for t in jr] == [7, 8, 9, 10, 11, 12]
    gaps = [jr[i + 1].start_us - jr[i].end_us for i in range(len(jr) - 1)]
    assert all(gaps[i] >= (15000 << i) * 1000 for i in range(len(gaps)))  # back-off kept across wakes
    assert len({struct.unpack_from("<H", t.data, 17)[0] for t in jr}) == len(jr)  # DevNonce never reused
    assert b.clock.monotonic_ms() - t0 < 3600000  # joined within the hour


def test_device_time_sets_the_clock_to_the_servers_utc_and_resyncs_daily():
    b = _joined(Board())
    got = []
    m = b.wake()

    def set_clock(s, us):
        got.append((s, us, b.clock.us))

    m.set_clock = set_clock
    m.send(2, b"t")
    up = b.ups()[-1].data
    assert up[8:8 + (up[5] & 0x0F)] == b"\x0d"  # DeviceTimeReq in FOpts
    s, us, at = got[0]
    true_us = NS.UTC_AT_ZERO_S * 1000000 + at
    assert abs(s * 1000000 + us - true_us) < 1000000 // 256 + 1000  # 1/256 s of the answer, 1 ms of ticks
    b.sleep(m)
    m = b.wake()
    m.set_clock = set_clock
    m.send(2, b"u")
    assert b.ups()[-1].data[5] & 0x0F == 0 and len(got) == 1  # synced: no request
    b.sleep(m, 86400000)
    m = b.wake()
    m.set_clock = set_clock
    m.send(2, b"v")
    assert len(got) == 2  # a day later it asks again


def test_no_time_request_without_a_clock_to_set_and_foreign_rtc_data_is_ignored():
    b = _joined(Board())
    m = b.wake()
    m.send(2, b"x")
    assert b.ups()[-1].data[5] & 0x0F == 0  # no set_clock: no DeviceTimeReq
    assert m.unpack(b"\x00" * 80) == 0 and m.unpack(b"") == 0
    raises(ValueError, m.send, 0, b"x")


def test_join_duty_cycle_against_a_silent_air_over_two_days():
    b = Board(gateway_sf_min=99)  # nobody hears the node
    for _ in range(48 * 12):  # a wake every 5 min for 48 h, a join trial whenever the back-off allows
        m = b.wake()
        try:
            m.join(1, 30000)
        except (JoinFailed, DutyCycleError):
            pass
        b.sleep(m)
    jr = [t for t in b.ups() if t.data[0] == 0]
    assert [t.sf for t in jr[:6]] == [7, 8, 9, 10, 11, 12] and all(t.sf == 12 for t in jr[6:])
    h = 3600000000
    t0 = jr[0].start_us

    def air(lo, hi):
        return sum(t.end_us - t.start_us for t in jr if lo <= t.start_us - t0 < hi) / 1e6

    # LoRaWAN 1.0.4 7.3: 36 s in the first hour, 36 s per 10 h up to 11 h, then 8.7 s per 24 h
    assert air(0, h) <= 36 and air(h, 11 * h) <= 36
    for k in range(11 * 12, 24 * 12 + 1):  # every 24 h window after the 11th hour, in 5 min steps
        lo = k * h // 12
        assert air(lo, lo + 24 * h) <= 8.7
    assert len(jr) > 20  # it keeps trying
    assert len({struct.unpack_from("<H", t.data, 17)[0] for t in jr}) == len(jr)

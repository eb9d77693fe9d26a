# The Class A MAC (cnode.lorawan.mac) against the simulated air and network server, in virtual time.
# Every check reads what the simulated radio actually carried (hwsim Air log) or what the server decoded.
import struct

import cnode  # noqa: F401
from fwtest import Lcg, raises, tohex, unhex

from citynode.sim import netserver as NS
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air, SimModem
from cnode.lorawan import (DutyCycleError, FrameError, JoinFailed, MICError, NotJoined, PayloadTooLong,
                           ReplayError)
from cnode.lorawan.mac import FCNT_PERSIST_EVERY, Mac
from cnode.lorawan.store import DictStore

APP_KEY = unhex("2b7e151628aed2a6abf7158809cf4f3c")
JOIN_EUI = unhex("70B3D57ED0000010")
DEV_EUI = unhex("0018B20000000101")
SF_BY_DR = (12, 11, 10, 9, 8, 7)


class Rig:
    def __init__(self, gateways=1, store=None, server=True, clock=None, air=None, ns=None, **kw):
        self.clock = clock or VirtualClock()
        self.air = air or Air(self.clock)
        self.ns = ns
        if ns is None and server:
            self.ns = NS.NetworkServer(self.air, **kw)
            for g in range(gateways):
                self.ns.add_gateway(snr=8 - 4 * g)
            self.dev = self.ns.add_device(DEV_EUI, APP_KEY, JOIN_EUI)
        elif ns is not None:
            self.dev = ns.devices[DEV_EUI]
        self.store = store if store is not None else DictStore()
        self.modem = SimModem(self.air)
        self.rng = Lcg(7)
        self.mac = Mac(self.modem, self.clock, self.store, DEV_EUI, JOIN_EUI, APP_KEY,
                       rand=lambda n: self.rng.next() % n if n > 0 else 0, battery=lambda: 200)

    def node_frames(self):
        return [t for t in self.air.log if t.source == "node"]

    def last_up(self):
        return self.node_frames()[-1]


def _fopts(frame):
    return frame[8:8 + (frame[5] & 0x0F)]


def test_join_uplink_downlink_exchange():
    r = Rig(gateways=2)
    assert r.mac.join()
    jr = r.air.log[0]
    # join-request: MHDR 00 | JoinEUI LE | DevEUI LE | DevNonce 0 | MIC, on a default channel at DR5
    assert tohex(jr.data[:19]) == "00" "100000d07ed5b370" "0101000000b21800" "0000"
    assert jr.freq_khz in (868100, 868300, 868500) and jr.sf == 7 and not jr.iq_inverted
    ja = r.air.log[1]  # join-accept in RX1: same channel and DR, 5 s after the request ended
    assert ja.iq_inverted and ja.freq_khz == jr.freq_khz and ja.sf == 7
    assert ja.start_us - jr.end_us == 5000000
    assert r.mac.joined and r.mac.devaddr == r.dev.devaddr == 0x26011000
    assert r.mac.nwk_skey == r.dev.nwk_skey and r.mac.app_skey == r.dev.app_skey
    r.ns.queue_downlink(DEV_EUI, 10, b"\x01\x02config")
    r.mac.send(2, b"\xa1\x01\x02hello")
    up = r.dev.uplinks[-1]
    assert (up.fcnt, up.port, up.data, up.confirmed, up.gw_count) == (0, 2, b"\xa1\x01\x02hello", False, 2)
    assert r.ns.duplicates >= 1  # the second gateway's copy was folded into the first
    f = r.air.log[2]
    assert f.data[0] == 0x40 and struct.unpack_from("<I", f.data, 1)[0] == 0x26011000
    assert f.data[5] == 0x80  # ADR on, nothing else
    assert struct.unpack_from("<H", f.data, 6)[0] == 0
    dl = r.air.log[3]
    assert dl.iq_inverted and dl.start_us - f.end_us == 1000000 and dl.freq_khz == f.freq_khz
    assert r.mac.downlink == (10, b"\x01\x02config") and r.mac.rx_error is None
    assert r.mac.fcnt_down == 1
    r.mac.send(2, b"again")
    assert r.dev.uplinks[-1].fcnt == 1 and r.dev.uplinks[-1].data == b"again" and r.mac.downlink is None
    assert len(r.air.log) == 5  # no downlink was owed: RX windows stayed empty


def test_not_joined_and_payload_limits():
    r = Rig()
    raises(NotJoined, r.mac.send, 1, b"x")
    r.mac.join()
    assert r.mac.max_payload() == 222  # DR5 (RP002 EU868 N)
    r.mac.dr = 0
    assert r.mac.max_payload() == 51
    assert str(raises(PayloadTooLong, r.mac.send, 1, bytes(52))) == "52 B > 51 B at DR0"
    raises(ValueError, r.mac.send, 0, b"x")
    raises(ValueError, r.mac.send, 224, b"x")
    r.mac.send(1, bytes(51))
    assert len(r.last_up().data) == 51 + 13 and r.last_up().sf == 12
    # a queued DevStatusAns (3 B in FOpts) leaves 48 B for the application
    r.ns.queue_mac(DEV_EUI, NS.dev_status_req())
    r.mac.send(1, b"x")
    assert r.mac.max_payload() == 48
    raises(PayloadTooLong, r.mac.send, 1, bytes(49))
    r.mac.send(1, bytes(48))
    assert tohex(_fopts(r.last_up().data)) == "06c807"  # battery 200, margin = downlink SNR 7 dB (SimModem)


def test_rx2_window_and_rx_param_setup():
    r = Rig(rx_window=2)
    r.mac.join()
    jr, ja = r.air.log[0], r.air.log[1]
    assert ja.start_us - jr.end_us == 6000000 and ja.freq_khz == 869525 and ja.sf == 12  # RX2: DR0
    r.ns.queue_mac(DEV_EUI, NS.rx_param_setup_req(2, 3, 869525))  # RX1 offset 2, RX2 DR3 (SF9)
    r.mac.send(1, b"a")
    assert (r.mac.rx1_dr_offset, r.mac.rx2_dr) == (2, 3)
    r.mac.send(1, b"a2")
    up = r.last_up().data
    assert tohex(_fopts(up)) == "0507"  # RXParamSetupAns: all three bits set
    # the server now owes a downlink (sticky answer) and sends it in RX2 at SF9
    dl = r.air.log[-1]
    assert dl.iq_inverted and dl.sf == 9 and dl.start_us - r.last_up().end_us == 2000000
    assert r.mac.sticky_rxparam == -1  # cleared by that downlink
    r.mac.send(1, b"b")
    assert len(_fopts(r.last_up().data)) == 0
    # an invalid request (DR 9) changes nothing and the NACK repeats until a downlink arrives
    r.ns.queue_mac(DEV_EUI, NS.rx_param_setup_req(1, 9, 869525))
    r.mac.send(1, b"c")
    r.ns.rx_window = 1  # the server now answers in RX1 (the MAC listens in both windows)
    r.air.drop_uplinks = 1
    r.mac.send(1, b"d")
    assert tohex(_fopts(r.last_up().data)) == "0505" and r.mac.rx2_dr == 3
    r.mac.send(1, b"e")
    assert tohex(_fopts(r.last_up().data)) == "0505"
    dl = r.air.log[-1]  # RX1: uplink channel, DR5 - RX1DROffset 2 = DR3 (SF9)
    assert dl.iq_inverted and dl.sf == 9 and dl.freq_khz == r.last_up().freq_khz and r.mac.sticky_rxparam == -1


def test_rx1_dr_offset_and_timing_setup():
    r = Rig()
    r.mac.join()
    r.ns.queue_mac(DEV_EUI, NS.rx_timing_setup_req(3))
    r.mac.send(1, b"a")
    assert r.mac.rx1_delay_ms == 3000
    r.mac.send(1, b"a2")
    assert tohex(_fopts(r.last_up().data)) == "08"
    dl = r.air.log[-1]
    assert dl.iq_inverted and dl.start_us - r.last_up().end_us == 3000000  # server answered at the new delay
    assert not r.mac.sticky_rxtiming
    r.ns.queue_mac(DEV_EUI, NS.rx_param_setup_req(3, 0, 869525))
    r.mac.send(1, b"b")
    r.ns.queue_downlink(DEV_EUI, 9, b"z")
    r.mac.send(1, b"c")
    dl = r.air.log[-1]
    assert dl.sf == SF_BY_DR[2] and r.mac.downlink == (9, b"z")  # RX1 at DR5 - 3 = DR2 (SF10)


def test_link_check_and_dev_status():
    r = Rig(gateways=3)
    r.mac.join()
    r.mac.request_link_check()
    assert r.mac.max_payload() == 221
    r.mac.send(1, b"x")
    assert tohex(_fopts(r.last_up().data)) == "02"
    # best gateway SNR 8 dB at SF7 (floor -7.5 dB): margin 15 dB, seen by 3 gateways
    assert (r.mac.link_margin, r.mac.link_gw_cnt) == (15, 3)
    r.ns.queue_mac(DEV_EUI, NS.dev_status_req())
    r.mac.send(1, b"y")
    r.mac.send(1, b"z")
    assert tohex(_fopts(r.last_up().data)) == "06c807"  # battery 200, margin SNR 7 dB of the last downlink
    assert r.dev.answers[-1] == (0x06, b"\xc8\x07")


def test_link_adr_req_applied_and_rejected():
    r = Rig()
    r.mac.join()
    r.ns.queue_mac(DEV_EUI, NS.link_adr_req(3, 2, 0x0007, nb_trans=2))
    r.mac.send(1, b"a")
    assert (r.mac.dr, r.mac.tx_power, r.mac.nb_trans) == (3, 2, 2)
    n0 = len(r.node_frames())
    r.mac.send(1, b"b")
    frames = r.node_frames()[n0:]
    assert tohex(_fopts(frames[0].data)) == "0307"  # LinkADRAns: power, DR, mask ACK
    assert len(frames) == 2 and frames[0].data == frames[1].data  # NbTrans 2: same frame twice
    assert frames[0].sf == 9 and frames[0].power == 16 - 2 * 2 - 2  # 12 dBm EIRP - 2 dBi antenna
    assert r.dev.retransmissions == 1 and r.dev.uplinks[-1].data == b"b"
    # a mask enabling an undefined channel (4) is refused as a whole: DR and power stay
    r.ns.queue_mac(DEV_EUI, NS.link_adr_req(5, 0, 0x0010))
    r.mac.send(1, b"c")
    r.mac.send(1, b"d")
    assert tohex(_fopts(r.node_frames()[-1].data)) == "0306" and (r.mac.dr, r.mac.tx_power) == (3, 2)
    # DR 7 is not supported here, TX power 9 is undefined in EU868
    r.ns.queue_mac(DEV_EUI, NS.link_adr_req(7, 9, 0x0007))
    r.mac.send(1, b"e")
    r.mac.send(1, b"f")
    assert tohex(_fopts(r.node_frames()[-1].data)) == "0301"
    # ChMaskCntl 6 (all defined channels on), DR/power 0xF = keep, NbTrans 0 = default 1
    r.ns.queue_mac(DEV_EUI, NS.link_adr_req(15, 15, 0, nb_trans=0, cntl=6))
    r.mac.send(1, b"g")
    assert (r.mac.dr, r.mac.tx_power, r.mac.nb_trans, r.mac.ch_mask) == (3, 2, 1, 0x0007)
    # a block of two requests: both answered with one status, the last DR wins
    r.ns.queue_mac(DEV_EUI, NS.link_adr_req(1, 1, 0x0003) + NS.link_adr_req(4, 1, 0x0007))
    r.mac.send(1, b"h")
    r.mac.send(1, b"i")
    assert tohex(_fopts(r.node_frames()[-1].data)) == "03070307" and (r.mac.dr, r.mac.ch_mask) == (4, 7)


def test_new_channel_and_duty_cycle_req():
    r = Rig()
    r.mac.join()
    r.ns.queue_mac(DEV_EUI, NS.new_channel_req(3, 867100, 0, 5) + NS.new_channel_req(1, 867300, 0, 5)
                   + NS.new_channel_req(4, 880000, 0, 5) + NS.new_channel_req(5, 867500, 4, 2))
    r.mac.send(1, b"a")
    assert r.mac.ch_freq[3] == 867100 and r.mac.ch_mask == 0x0F
    assert r.mac.ch_freq[1] == 868300 and r.mac.ch_freq[4] == 0 and r.mac.ch_freq[5] == 0
    r.mac.send(1, b"a2")
    up = r.last_up().data
    # NewChannelAns x4 (ok, default channel refused, bad frequency, bad DR range)
    assert tohex(_fopts(up)) == "0703" "0700" "0702" "0701"
    n0 = len(r.node_frames())
    for i in range(12):
        r.mac.send(1, b"r")
    assert 867100 in [t.freq_khz for t in r.node_frames()[n0:]]  # the new channel joins the rotation
    r.ns.queue_mac(DEV_EUI, NS.duty_cycle_req(7))  # aggregated duty cycle 1/128
    r.mac.send(1, b"b")
    r.mac.send(1, b"c")
    assert tohex(_fopts(r.last_up().data)) == "04"
    assert r.mac.max_dcycle == 7
    a = r.last_up()
    raises(DutyCycleError, r.mac.send, 1, b"d")
    e = raises(DutyCycleError, r.mac.send, 1, b"d")
    r.mac.send(1, b"d", wait_ms=e.wait_ms)
    b = r.last_up()
    assert b.start_us - a.start_us >= 128 * a.airtime_us() - 1000


def test_duty_cycle_never_exceeded_on_air():
    r = Rig()
    r.mac.join()
    r.air.drop_uplinks = 10**6  # no downlinks: the MAC must keep to 1 % per sub-band on its own
    r.mac.adr = False
    r.mac.dr = 0
    refused = 0
    t_end = 3 * 3600 * 1000
    while r.clock.monotonic_ms() < t_end:
        try:
            r.mac.send(1, bytes(51))
        except DutyCycleError as e:
            refused += 1
            assert e.wait_ms > 0
            n = len(r.node_frames())
            r.clock.sleep_ms(e.wait_ms)
            assert len(r.node_frames()) == n
    frames = r.node_frames()
    assert refused > 0 and len(frames) > 30
    fcnts = [struct.unpack_from("<H", f.data, 6)[0] for f in frames[1:]]
    assert fcnts == list(range(len(fcnts)))  # a refused send uses no FCnt
    air = frames[1].airtime_us()  # frames[0] is the join-request
    assert air == 2793472  # SF12, PHY 64 B (facts: AN1200.13 check value)
    for f in frames:
        win = [g for g in frames if f.start_us <= g.start_us < f.start_us + 3600000000]
        assert sum(g.airtime_us() for g in win) <= 36000000  # 1 % of an hour, 868.0-868.6 MHz
    # and the MAC used the budget: at least 11 of the 12 frames that fit fully into an hour
    first_hour = [g for g in frames if g.start_us < 3600000000]
    assert len(first_hour) >= 11


def test_join_backoff_devnonce_and_failure():
    r = Rig(server=False)
    raises(JoinFailed, r.mac.join, 5)
    jr = r.node_frames()
    assert [struct.unpack_from("<H", t.data, 17)[0] for t in jr] == [0, 1, 2, 3, 4]
    assert r.store.get_int("dn") == 5
    gaps = [jr[i + 1].start_us - jr[i].start_us for i in range(4)]
    for i in range(4):
        assert gaps[i] >= (15000 << i) * 1000  # exponential back-off
        assert gaps[i] >= 100 * jr[i].airtime_us()  # 1.0.4 join duty cycle, first hour 1 %
    assert [t.sf for t in jr] == [7, 8, 9, 10, 11]  # DR steps down one per trial


def test_persistence_across_reboot():
    store = DictStore()
    r = Rig(store=store)
    r.mac.join()
    for i in range(5):
        r.mac.send(1, bytes((i,)))
    w = store.writes
    r.mac.send(1, b"5")
    assert store.writes == w  # FCntUp is not written on every frame
    # reboot: a new MAC on the same store keeps the session and skips ahead past the reserved block
    boot = Rig(store=store, clock=r.clock, air=r.air, ns=r.ns)
    assert boot.mac.joined and boot.mac.devaddr == r.mac.devaddr
    boot.mac.send(1, b"after")
    up = r.dev.uplinks[-1]
    assert up.fcnt == FCNT_PERSIST_EVERY and up.data == b"after"
    assert struct.unpack_from("<H", boot.last_up().data, 6)[0] == FCNT_PERSIST_EVERY
    # FCntDown survives too: a downlink replayed from before the reboot is refused
    r.ns.queue_downlink(DEV_EUI, 3, b"once")
    boot.mac.send(1, b"x")
    old = r.air.log[-1].data
    assert boot.mac.downlink == (3, b"once")
    boot2 = Rig(store=store, clock=r.clock, air=r.air, ns=r.ns)
    raises(ReplayError, boot2.mac.parse_downlink, old, len(old))
    # a rejoin after the reboot never reuses a DevNonce
    boot2.mac.join()
    nonces = [struct.unpack_from("<H", t.data, 17)[0] for t in r.node_frames() if t.data[0] == 0]
    assert nonces == [0, 1] and r.dev.joins == 2


def test_malformed_downlinks_rejected():
    r = Rig()
    r.mac.join()
    m, dev = r.mac, r.dev
    good = r.ns.make_downlink(dev, 4, b"ok")
    for n in (0, 5, 11):
        e = raises(FrameError, m.parse_downlink, good, n)
        assert "truncated" in str(e)
    bad = bytearray(good)
    bad[9] ^= 1
    raises(MICError, m.parse_downlink, bad, len(bad))
    other = bytearray(good)
    other[1] ^= 0xFF
    raises(FrameError, m.parse_downlink, other, len(other))
    fopts_long = bytearray(good)
    fopts_long[5] = 0x8F  # FOptsLen 15 runs past the frame
    raises(FrameError, m.parse_downlink, fopts_long, len(fopts_long))
    raises(FrameError, m.parse_downlink, bytes([0x40]) + good[1:], len(good))  # an uplink MType
    both = r.ns.make_downlink(dev, 0, b"\x06", fopts=b"\x06")
    raises(FrameError, m.parse_downlink, both, len(both))
    assert m.fcnt_down == 0 and m.downlink is None  # nothing was accepted
    assert m.parse_downlink(good, len(good)) == 4 and m.downlink == (4, b"ok") and m.fcnt_down == 1
    raises(ReplayError, m.parse_downlink, good, len(good))
    # over the air: a corrupted downlink is recorded, the uplink call completes
    r.ns.queue_downlink(DEV_EUI, 4, b"corrupt me")
    r.air.corrupt_downlinks = 1
    m.send(1, b"x")
    assert isinstance(m.rx_error, MICError) and m.rx_errors == 1 and m.downlink is None
    # a replayed old frame in RX1 is refused with ReplayError
    r.air.schedule("attacker", r.clock.us + 10**6 + 50000, 868100, 7, good)
    r.air.schedule("attacker", r.clock.us + 10**6 + 50000, 868300, 7, good)
    r.air.schedule("attacker", r.clock.us + 10**6 + 50000, 868500, 7, good)
    m.send(1, b"y")
    assert isinstance(m.rx_error, ReplayError) and m.downlink is None
    m.send(1, b"z")  # and the MAC carries on normally
    assert r.dev.uplinks[-1].data == b"z"


def test_confirmed_uplink_ack_and_confirmed_downlink():
    r = Rig()
    r.mac.join()
    r.mac.nb_trans = 3
    r.air.drop_uplinks = 1  # the first attempt is lost
    assert r.mac.send(1, b"conf", confirmed=True)
    frames = r.node_frames()[-2:]
    assert frames[0].data == frames[1].data and frames[0].data[0] == 0x80
    assert r.mac.acked and r.dev.uplinks[-1].confirmed and r.dev.retransmissions == 0
    r.air.drop_uplinks = 3
    assert not r.mac.send(1, b"lost", confirmed=True)
    assert not r.mac.acked
    r.mac.nb_trans = 1
    r.ns.queue_downlink(DEV_EUI, 7, b"ack me", confirmed=True)
    r.mac.send(1, b"q")
    assert r.mac.downlink == (7, b"ack me")
    r.mac.send(1, b"r")
    assert r.last_up().data[5] & 0x20 and r.dev.acked_confirmed == 1


def test_adr_ack_req_and_backoff():
    r = Rig()
    r.mac.join()
    r.air.drop_uplinks = 10**6  # the network hears nothing from now on
    r.mac.tx_power = 3
    for i in range(161):
        r.mac.send(1, b"p", wait_ms=10**7)
    frames = r.node_frames()[1:]  # after the join-request
    flags = [(f.data[5] & 0x40) != 0 for f in frames]
    assert flags == [False] * 64 + [True] * 97
    sfs = [f.sf for f in frames]
    powers = [f.power for f in frames]
    # frame 96: power back to default (14 dBm EIRP), frame 128: DR5 -> DR4, frame 160: DR3
    assert powers[95] == 16 - 6 - 2 and powers[96] == 16 - 2 - 2
    assert sfs[127] == 7 and sfs[128] == 8 and sfs[159] == 8 and sfs[160] == 9


def test_dl_channel_and_truncated_commands():
    r = Rig()
    r.mac.join()
    m, dev = r.mac, r.dev
    # DlChannelReq (0x0A): channel 0 answers downlinks on 868.9 MHz; a request for undefined channel 9 is refused
    f = r.ns.make_downlink(dev, fopts=b"\x0a\x00" + bytes((0x68, 0x95, 0x84)) + b"\x0a\x09" + bytes((0x68, 0x95, 0x84)))
    assert m.parse_downlink(f, len(f)) == -1
    assert m.ch_dl[0] == 868900 and m.ch_dl[9] == 0
    assert m.sticky_dlch == 0x01  # the last answer: frequency ok, channel undefined
    # truncated commands end parsing without a crash and without applying anything
    for cut in (b"\x03\x50\x07", b"\x05\x12", b"\x07\x03\x0c\x4f", b"\x02\x10", b"\x08", b"\x04"):
        f = r.ns.make_downlink(dev, fopts=cut)
        assert m.parse_downlink(f, len(f)) == -1
    assert (m.dr, m.rx2_dr, m.rx1_delay_ms, m.max_dcycle, m.ch_freq[3]) == (5, 0, 1000, 0, 0)
    assert m.link_gw_cnt == -1
    # an unknown CID stops parsing: the DevStatusReq after it is not answered
    f = r.ns.make_downlink(dev, fopts=b"\x7f\x06")
    m.parse_downlink(f, len(f))
    assert m.pending_fopts() == 0


def test_join_accept_cflist_and_join_nonce_replay():
    r = Rig(cflist=[867100, 867300, 867500, 867700, 867900])
    r.mac.join()
    assert r.mac.ch_freq[3:8] == [867100, 867300, 867500, 867700, 867900] and r.mac.ch_mask == 0xFF
    assert r.store.get_int("jn") == 1
    r.ns.join_nonce = 0  # a join server that lost its state answers with JoinNonce 1 again
    e = raises(JoinFailed, r.mac.join, 1)
    assert "1 attempts" in str(e)
    assert isinstance(r.mac.rx_error, ReplayError) and not r.mac.joined
    raises(NotJoined, r.mac.send, 1, b"x")


def test_region_airtime_and_duty_ledger():
    from cnode.lorawan import region as R
    from cnode.lorawan.dutycycle import DutyCycle

    # AN1200.13 check values (facts.md): SF7 PHY 10 B, SF9 13 B, SF12 24 B and 64 B, 125 kHz, CR 4/5
    assert R.airtime_us(7, 125, 10) == 41216
    assert R.airtime_us(9, 125, 13) == 164864
    assert R.airtime_us(12, 125, 24) == 1482752
    assert R.airtime_us(12, 125, 64) == 2793472
    assert R.dr_airtime_us(0, 64) == 2793472 and R.dr_airtime_us(5, 10) == 41216
    assert R.MAX_PAYLOAD == (51, 51, 51, 115, 222, 222) and R.DR_SF == (12, 11, 10, 9, 8, 7)
    assert [R.tx_eirp(i) for i in range(8)] == [16, 14, 12, 10, 8, 6, 4, 2]
    assert [R.rx1_dr(5, o) for o in range(6)] == [5, 4, 3, 2, 1, 0] and R.rx1_dr(1, 3) == 0
    bands = [R.band_of(f) for f in (863500, 867100, 868100, 868500, 868900, 869525, 869800, 862000, 869300)]
    assert bands == [0, 1, 2, 2, 3, 4, 5, -1, -1]
    assert DutyCycle.limit_ms(2) == 36000 and DutyCycle.limit_ms(4) == 360000 and DutyCycle.limit_ms(0) == 3600
    d = DutyCycle()
    t0 = 10 * 60000 + 5000  # minute 10
    for i in range(12):  # 12 x 2.8 s = 33.6 s in minute 10
        d.record(2, t0 + i * 3000, 2800)
    assert d.used_ms(2, t0 + 40000) == 33600 and d.used_ms(1, t0) == 0
    assert d.wait_ms(2, t0 + 40000, 2400) == 0  # 36.0 s exactly fits
    assert d.wait_ms(2, t0 + 40000, 2401) == (10 + 61) * 60000 - (t0 + 40000)  # until minute 10 has left
    assert d.wait_ms(1, t0, 2401) == 0  # another sub-band is independent
    assert d.wait_ms(0, t0, 3601) == -1  # longer than the whole 0.1 % hour budget
    assert d.used_ms(2, (10 + 61) * 60000) == 0


def test_a_node_provisioned_anew_joins_as_its_new_identity():
    """citynode provision --replace writes another DevEUI and AppKey: the session (and the last JoinNonce) kept
    in NVS belong to the old identity, so the MAC drops them and joins afresh instead of sending as the old
    device (it did, and its new identity's join-accepts were refused until their JoinNonce passed the old)."""
    store = DictStore()
    r = Rig(store=store)
    r.mac.join()
    r.mac.send(1, b"old")
    assert store.get_int("jn") > 0
    new_eui, new_key = bytes.fromhex("0101000000b21801"), bytes(range(16, 32))
    dev2 = r.ns.add_device(new_eui, new_key, JOIN_EUI)
    boot = Mac(SimModem(r.air), r.clock, store, new_eui, JOIN_EUI, new_key, rand=lambda n: 0, battery=lambda: 200)
    assert not boot.joined and store.get_int("jn") == 0
    assert boot.join() and boot.devaddr == dev2.devaddr != r.mac.devaddr
    boot.send(1, b"new")
    assert dev2.uplinks[-1].data == b"new" and r.dev.uplinks[-1].data == b"old"
    # and the same identity after a reboot still keeps its session
    again = Mac(SimModem(r.air), r.clock, store, new_eui, JOIN_EUI, new_key, rand=lambda n: 0, battery=lambda: 200)
    assert again.joined and again.devaddr == dev2.devaddr


def test_forget_drops_the_session_for_good_and_the_next_join_brings_new_keys():
    """The `rejoin` downlink command: after forget() a reboot (or a power cut before the join) finds no session,
    and the join that follows derives new session keys from a new DevNonce."""
    store = DictStore()
    r = Rig(store=store)
    r.mac.join()
    r.mac.send(1, b"before")
    old = (r.mac.devaddr, bytes(r.dev.app_skey))
    r.mac.forget()
    assert not r.mac.joined
    boot = Mac(SimModem(r.air), r.clock, store, r.mac.dev_eui, JOIN_EUI, r.dev.app_key, rand=lambda n: 0,
               battery=lambda: 200)
    assert not boot.joined  # the power went before the join: the old session does not come back
    assert boot.join() and bytes(r.dev.app_skey) != old[1]
    boot.send(1, b"after")
    assert r.dev.uplinks[-1].data == b"after" and r.dev.joins == 2

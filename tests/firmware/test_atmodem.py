# AT-modem links (RAK3172 RUI3, Seeed LoRa-E5) against their twins: exact command bytes, joins, downlinks, every
# fault to its own exception and back, and a simulated day of cnode.app.Node over each modem (CPython + MicroPython).
from cnode.atmodem import AtPort, LinkTimeout, ModemBusy, ModemError
from cnode.lorawan import DutyCycleError, JoinFailed, LoRaWANError, NotJoined, PayloadTooLong
from atmodem_day import Day, fault_script, modem
from fwtest import raises

KINDS = ("rak3172", "lorae5")
DEV_HEX = b"0018B20000000101"
JOIN_HEX = b"70B3D57ED0000010"
KEY_HEX = b"2B7E151628AED2A6ABF7158809CF4F3C"


def _joined(kind, dr=5, log=None):
    clock, uart, twin, link = modem(kind, dr, log)
    assert link.join(8) is True
    uart.sent = bytearray()
    return clock, uart, twin, link


# --- exact bytes on the wire ------------------------------------------------------------------------------------
def test_rak3172_join_bytes():
    clock, uart, twin, link = modem("rak3172")
    t0 = clock.monotonic_ms()
    assert not link.joined
    assert link.join(8) is True
    assert link.joined
    assert bytes(uart.sent) == (b"AT\r\nAT+NJM=1\r\nAT+BAND=4\r\nAT+DEVEUI=" + DEV_HEX + b"\r\nAT+APPEUI=" + JOIN_HEX
                                + b"\r\nAT+APPKEY=" + KEY_HEX + b"\r\nAT+JOIN=1:0:10:8\r\n")
    assert twin.keys == {"DEVEUI": DEV_HEX.decode(), "APPEUI": JOIN_HEX.decode(), "APPKEY": KEY_HEX.decode()}
    # +EVT:JOINED comes after the 5 s join-accept delay, not before
    assert 5000 <= clock.monotonic_ms() - t0 < 7000


def test_rak3172_send_bytes():
    clock, uart, twin, link = _joined("rak3172")
    t0 = clock.monotonic_ms()
    assert link.send(2, memoryview(b"\x01\x02\xab\xcd")) is True
    assert bytes(uart.sent) == b"AT+DR=?\r\nAT+CFM=0\r\nAT+SEND=2:0102ABCD\r\n"
    assert 2000 <= clock.monotonic_ms() - t0 < 4000  # airtime, RX1 and RX2 windows
    uart.sent = bytearray()
    assert link.send(3, b"\x00", True) is True and link.acked
    assert bytes(uart.sent) == b"AT+DR=?\r\nAT+CFM=1\r\nAT+SEND=3:00\r\n"
    uart.sent = bytearray()
    assert link.send(3, b"\xff", True) is True
    assert bytes(uart.sent) == b"AT+DR=?\r\nAT+SEND=3:FF\r\n"  # CFM already 1
    assert [(p, d, c) for (_, p, d, c) in twin.network] == [(2, b"\x01\x02\xab\xcd", False), (3, b"\x00", True),
                                                            (3, b"\xff", True)]


def test_lorae5_join_bytes():
    clock, uart, twin, link = modem("lorae5")
    assert link.join(8) is True
    assert bytes(uart.sent) == (b'AT\r\nAT+ID=DevEui,"' + DEV_HEX + b'"\r\nAT+ID=AppEui,"' + JOIN_HEX
                                + b'"\r\nAT+KEY=APPKEY,"' + KEY_HEX + b'"\r\nAT+MODE=LWOTAA\r\nAT+DR=EU868\r\n'
                                + b"AT+JOIN\r\n")
    assert twin.keys == {"DevEui": DEV_HEX.decode(), "AppEui": JOIN_HEX.decode(), "AppKey": KEY_HEX.decode()}


def test_lorae5_send_bytes():
    clock, uart, twin, link = _joined("lorae5")
    assert link.send(2, b"\x01\x02\xab\xcd") is True
    assert bytes(uart.sent) == b'AT+DR\r\nAT+PORT=2\r\nAT+MSGHEX="0102ABCD"\r\n'
    uart.sent = bytearray()
    assert link.send(2, b"\x10", True) is True and link.acked
    assert bytes(uart.sent) == b'AT+DR\r\nAT+CMSGHEX="10"\r\n'  # port already 2
    uart.sent = bytearray()
    assert link.send(7, b"\x11") is True
    assert bytes(uart.sent) == b'AT+DR\r\nAT+PORT=7\r\nAT+MSGHEX="11"\r\n'
    assert [(p, d, c) for (_, p, d, c) in twin.network] == [(2, b"\x01\x02\xab\xcd", False), (2, b"\x10", True),
                                                            (7, b"\x11", False)]


# --- joins ------------------------------------------------------------------------------------------------------
def test_join_succeeds_after_failures():
    for kind in KINDS:
        clock, uart, twin, link = modem(kind)
        twin.inject("join_fail", 3)
        t0 = clock.monotonic_ms()
        assert link.join(8) is True, kind
        assert twin.join_requests == 4, kind
        assert clock.monotonic_ms() - t0 >= 3 * 10000, kind  # attempts 10 s apart


def test_join_fails_after_its_attempts_then_recovers():
    for kind in KINDS:
        clock, uart, twin, link = modem(kind)
        twin.inject("join_fail", 10)
        e = raises(JoinFailed, link.join, 3)
        assert "3" in str(e), kind
        assert twin.join_requests == 3 and not link.joined, kind
        twin.clear()
        assert link.join(1) is True and link.joined, kind


def test_rak3172_join_asks_the_modem_for_n_attempts():
    clock, uart, twin, link = modem("rak3172")
    twin.inject("join_fail", 1)
    assert link.join(2) is True
    assert bytes(uart.sent).endswith(b"AT+JOIN=1:0:10:2\r\n")
    assert bytes(uart.sent).count(b"AT+JOIN") == 1  # the modem retries by itself


def test_rak3172_join_with_one_failure_event_for_all_attempts():
    for mode in ("each", "last"):
        clock, uart, twin, link = modem("rak3172")
        twin.join_fail_events = mode
        twin.inject("join_fail", 10)
        t0 = clock.monotonic_ms()
        e = raises(JoinFailed, link.join, 3)
        assert twin.join_requests == 3, mode
        assert clock.monotonic_ms() - t0 < 3 * 20000 + 26000, mode  # bounded by the attempts, not by luck
        assert ("after 3 attempts" if mode == "each" else "after 1 failure report") in str(e), mode
        twin.clear()
        clock.sleep_ms(30000)
        assert link.join(1) is True, mode


def test_join_without_answer_is_a_timeout():
    for kind in KINDS:
        clock, uart, twin, link = modem(kind)
        twin.inject("hang", 1)
        raises(LinkTimeout, link.join, 1)
        assert not link.joined, kind
        clock.sleep_ms(120000)
        assert link.join(1) is True, kind


# --- uplinks and downlinks --------------------------------------------------------------------------------------
def test_downlink_delivered_to_link():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.queue_downlink(3, b"\x05\x06\xfa")
        assert link.send(2, b"\x01") is True
        assert link.downlink == (3, b"\x05\x06\xfa"), kind
        assert link.rssi == -72, kind
        assert link.send(2, b"\x02") is True
        assert link.downlink is None, kind


def test_confirmed_downlink_and_ack():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.queue_downlink(9, b"\x42")
        assert link.send(2, b"\x01", True) is True, kind
        assert link.acked and link.downlink == (9, b"\x42"), kind


def test_confirmed_without_ack_returns_false():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.inject("noack", 1)
        assert link.send(2, b"\x01", True) is False, kind
        assert not link.acked and twin.network == [], kind
        assert link.send(2, b"\x01", True) is True, kind


def test_send_before_join_writes_nothing():
    for kind in KINDS:
        clock, uart, twin, link = modem(kind)
        raises(NotJoined, link.send, 2, b"\x01")
        assert bytes(uart.sent) == b"", kind


def test_payload_too_long_for_dr():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind, dr=0)
        assert link.max_payload() == 51, kind
        raises(PayloadTooLong, link.send, 2, bytes(52))
        assert b"MSGHEX" not in bytes(uart.sent) and b"SEND" not in bytes(uart.sent), kind
        assert link.send(2, bytes(51)) is True, kind
        twin.dr = 3
        assert link.max_payload() == 115, kind  # asked again after every uplink (ADR may move it)
        twin.dr = 4
        assert link.send(2, bytes(115)) is True, kind
        assert link.max_payload() == 222, kind


def test_dr_drop_between_read_and_send_is_payloadtoolong():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        assert link.max_payload() == 222, kind
        twin.dr = 0  # the modem's DR fell (ADR back-off) after the node read it
        raises(PayloadTooLong, link.send, 2, bytes(60))
        assert twin.network == [], kind
        assert link.max_payload() == 51, kind
        assert link.send(2, bytes(51)) is True, kind


def test_bad_port_rejected():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        raises(ValueError, link.send, 0, b"\x01")
        raises(ValueError, link.send, 224, b"\x01")


# --- faults -----------------------------------------------------------------------------------------------------
def test_busy_is_retried_with_backoff():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.inject("busy", 2)
        t0 = clock.monotonic_ms()
        assert link.send(2, b"\x01") is True, kind
        assert link.busy == 2, kind
        assert clock.monotonic_ms() - t0 >= 500 + 1000, kind  # back-off 0.5 s, then 1 s
        assert len(twin.network) == 1, kind


def test_busy_without_end_is_modembusy_then_recovers():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.inject("busy", 100)
        e = raises(ModemBusy, link.send, 2, b"\x01")
        assert "5 tries" in str(e), kind
        twin.clear()
        assert link.send(2, b"\x01") is True, kind


def test_no_reply_is_linktimeout_then_recovers():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.inject("timeout", 1)
        assert link.max_payload() == 51, kind  # DR unreadable: a DR0-sized frame fits every DR
        assert link.max_payload() == 222, kind  # read on the next call
        twin.inject("timeout", 1)
        t0 = clock.monotonic_ms()
        raises(LinkTimeout, link.send, 2, b"\x01")
        assert 2000 <= clock.monotonic_ms() - t0 < 2100, kind  # the command bound, no more
        assert link.send(2, b"\x02") is True, kind
        assert [d for (_, _, d, _) in twin.network] == [b"\x02"], kind


def test_uplink_that_never_ends_is_linktimeout():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.inject("hang", 1)
        e = raises(LinkTimeout, link.send, 2, b"\x01")
        assert "no " in str(e), kind
        clock.sleep_ms(100000)
        assert link.send(2, b"\x02") is True, kind


def test_garbage_lines_skipped():
    for kind in KINDS:
        clock, uart, twin, link = modem(kind)
        twin.inject("garbage", 40)
        assert link.join(8) is True, kind
        twin.queue_downlink(4, b"\x99")
        assert link.send(2, b"\x01") is True, kind
        assert link.downlink == (4, b"\x99"), kind
        assert link.at.garbage > 10, kind
        assert twin.faults["garbage"] < 40, kind


def test_command_echo_tolerated():
    for kind in KINDS:
        clock, uart, twin, link = modem(kind)
        twin.echo = True
        assert link.join(1) is True, kind
        twin.queue_downlink(5, b"\x07")
        assert link.send(2, b"\x01", True) is True and link.downlink == (5, b"\x07"), kind
        assert link.max_payload() == 222, kind


def test_lost_session_is_notjoined_then_rejoins():
    for kind in KINDS:
        clock, uart, twin, link = _joined(kind)
        twin.inject("lost", 1)
        raises(NotJoined, link.send, 2, b"\x01")
        assert not link.joined, kind
        assert link.join(1) is True, kind
        assert link.send(2, b"\x01") is True, kind


def test_lorae5_duty_cycle_refusal():
    clock, uart, twin, link = _joined("lorae5")
    twin.inject("noband", 1)
    e = raises(DutyCycleError, link.send, 2, b"\x01")
    assert e.wait_ms == 13469
    assert link.send(2, b"\x01") is True


def test_rejected_command_is_modemerror():
    clock, uart, twin, link = modem("rak3172")
    e = raises(ModemError, link.command, "AT+BAND=x")
    assert e.reply == "AT_PARAM_ERROR" and isinstance(e, LoRaWANError)
    clock, uart, twin, link = modem("lorae5")
    e = raises(ModemError, link.command, "AT+MODE=LORA", "MODE")
    assert e.reply == "ERROR(-1)"


def test_keys_never_in_log_or_errors():
    for kind in KINDS:
        msgs = []
        clock, uart, twin, link = modem(kind, log=msgs.append)
        twin.inject("timeout", 1)
        if kind == "rak3172":
            e = raises(LinkTimeout, link.command, "AT+APPKEY=", KEY_HEX)
        else:
            e = raises(LinkTimeout, link.command, 'AT+KEY=APPKEY,"', "KEY", KEY_HEX + b'"')
        assert link.join(1) is True, kind
        text = " ".join(msgs) + " " + str(e)
        assert "KEY" in str(e), kind
        assert KEY_HEX.decode() not in text and DEV_HEX.decode() not in text and JOIN_HEX.decode() not in text, kind
        assert len(msgs) >= 7 and all(m.startswith("> AT") for m in msgs), kind


# --- the line port ----------------------------------------------------------------------------------------------
class _Uart:
    def __init__(self, chunks):
        self.chunks = list(chunks)

    def any(self):
        return len(self.chunks[0]) if self.chunks else 0

    def read(self, n):
        c = self.chunks.pop(0)
        if len(c) > n:
            self.chunks.insert(0, c[n:])
            c = c[:n]
        return c

    def write(self, b):
        return len(b)


def test_atport_splits_lines_and_drops_noise():
    from citynode.sim.hwsim.clock import VirtualClock
    c = VirtualClock()
    u = _Uart([b"\r\nOK\r", b"\n+EVT:TX", b"_DONE\r\n\x00\xff", b"+EVT:RX_1:-1:2:UNICAST:3:ab\r\n" + b"z" * 700 + b"\n"])
    p = AtPort(u, c)
    assert p.readline(100) == "OK"
    assert p.readline(100) == "+EVT:TX_DONE"
    assert p.readline(100) == "+EVT:RX_1:-1:2:UNICAST:3:ab"
    assert p.readline(100) == "z" * (700 - 600)  # the over-long line's first 600 bytes were dropped
    assert p.garbage == 3
    t0 = c.monotonic_ms()
    assert p.readline(250) is None
    assert 250 <= c.monotonic_ms() - t0 <= 260


# --- a simulated day through cnode.app.Node ---------------------------------------------------------------------
def _check_day(d, kind):
    sent = [(p, f) for (p, f, ok) in d.link.sent if ok]
    net = d.network_frames()
    assert len(net) >= 22, kind  # a frame an hour at least (max_latency_s), more where frames fill up
    assert net == sent, kind  # what the node handed over is what the network got, byte for byte, once each
    assert len(d.queue.times) == 24 * 12, kind
    assert d.queue.depth <= 12, kind  # at most the last hour waits (max_latency_s)
    assert d.queue.dropped == 0, kind


def test_day_over_each_modem():
    for kind in KINDS:
        for dr in (0, 5):
            d = Day(kind, dr).run(24)
            _check_day(d, kind)
            assert d.link.failed == 0 and d.node.errors == 0, kind
            for (p, f) in d.network_frames():
                assert p == 2 and len(f) <= (51 if dr == 0 else 222), kind


def test_day_with_faults_over_each_modem():
    for kind in KINDS:
        d = Day(kind, 5).run(24, fault_script)
        sent = [(p, f) for (p, f, ok) in d.link.sent if ok and p == 2]
        net = [(p, f) for (p, f) in d.network_frames() if p == 2]
        assert net == sent, kind  # failed sends never reached the network in these twins
        assert d.link.failed >= 2, kind  # the hung uplink, the lost session
        assert d.commands == [(3, b"\x01\x02")], kind
        assert d.queue.depth <= 12 and d.queue.dropped == 0, kind
        assert "joined" in d.log, kind
        late = [f for (_, _, f, _) in d.twin.network[-5:]]
        assert all(len(f) <= 51 for f in late), kind


def test_day_confirmed_with_lost_acks():
    for kind in KINDS:
        def script(i, twin):
            if i in (40, 100):
                twin.inject("noack", 2 if i == 40 else 1)
        d = Day(kind, 5, confirmed=True).run(24, script)
        acked = [(p, f) for (p, f, ok) in d.link.sent if ok]
        assert d.network_frames() == acked, kind  # lost frames never reached the network, acked ones did
        assert len(d.link.sent) - len(acked) == 3, kind
        assert d.queue.depth <= 12 and d.queue.dropped == 0, kind

# MQTT 3.1.1 client and WiFi/MQTT link against a fake socket: every byte on the wire (CPython + MicroPython).
import errno

from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.flashfs import FlashFS
from cnode.app import Node
from cnode.lorawan import JoinFailed, NotJoined, PayloadTooLong
from cnode.mqtt import (MQTTClient, MQTTClosed, MQTTProtocolError, MQTTRefused, MQTTTimeout, put_rl)
from cnode.mqttlink import LinkDown, MqttLink
from cnode.queue import Queue
from cnode.sampler import Sampler, Slot
from fwtest import raises, tohex, unhex

CONNACK_OK = unhex("20020000")


class FakeSock:
    """Socket double: each readinto() returns at most one of `chunks` (so packets arrive cut up); with nothing
    left it times out (advancing the clock by the timeout) or, when `eof`, reports the end of stream.
    `out` collects the sent bytes; write() takes at most `max_send` bytes a call; `peer(sock, data)` sees
    each write (a fake broker)."""

    def __init__(self, clock, chunks=(), max_send=1000, peer=None):
        self.clock = clock
        self.chunks = [bytes(c) for c in chunks]
        self.out = bytearray()
        self.max_send = max_send
        self.peer = peer
        self.timeout = None
        self.eof = False
        self.closed = False

    def settimeout(self, t):
        self.timeout = t

    def connect(self, addr):
        self.addr = addr

    def write(self, b, off, n):
        if self.closed or self.eof:
            raise OSError(errno.ECONNRESET)
        n = min(n, self.max_send)
        data = bytes(b[off:off + n])
        self.out += data
        if self.peer is not None:
            self.peer(self, data)
        return n

    def readinto(self, buf, n):
        if self.closed:
            raise OSError(errno.EBADF)
        if not self.chunks:
            if self.eof:
                return 0
            if not self.timeout:
                return None
            self.clock.sleep_ms(int(self.timeout * 1000 + 0.5))
            raise OSError(errno.ETIMEDOUT)
        c = self.chunks[0]
        k = min(n, len(c))
        buf[:k] = c[:k]
        if k < len(c):
            self.chunks[0] = c[k:]
        else:
            self.chunks.pop(0)
        return k

    def close(self):
        self.closed = True


def _client(chunks=(), **kw):
    clock = VirtualClock()
    msgs = []
    c = MQTTClient(kw.pop("cid", "node1"), clock, on_message=lambda t, p: msgs.append((bytes(t), bytes(p))), **kw)
    s = FakeSock(clock, chunks)
    return c, s, clock, msgs


def _connected(chunks=(), **kw):
    c, s, clock, msgs = _client([CONNACK_OK], **kw)
    c.connect(s)
    s.out = bytearray()
    s.chunks = [bytes(x) for x in chunks]
    return c, s, clock, msgs


def test_remaining_length_table():
    # MQTT 3.1.1 section 2.2.3, Table 2.4: the boundaries of the 1..4 byte encodings
    table = [(0, "00"), (127, "7f"), (128, "8001"), (16383, "ff7f"), (16384, "808001"), (2097151, "ffff7f"),
             (2097152, "80808001"), (268435455, "ffffff7f")]
    for n, want in table:
        buf = bytearray(4)
        end = put_rl(buf, 0, n)
        assert tohex(buf[:end]) == want, n
    raises(ValueError, put_rl, bytearray(5), 0, 268435456)
    raises(ValueError, put_rl, bytearray(5), 0, -1)


def test_connect_bytes_clean_session():
    c, s, clock, _ = _client([CONNACK_OK])
    assert c.connect(s) is False
    # 3.1: 10 | RL 17 | "MQTT" level 4 | flags 02 (clean session) | keep alive 60 | client id "node1"
    assert tohex(s.out) == "1011" "00044d515454" "04" "02" "003c" "00056e6f646531"
    assert c.connected


def test_connect_bytes_user_password_persistent_session():
    sp = unhex("20020100")  # session present (3.2.2.2)
    c, s, clock, _ = _client([sp], keepalive=300, clean=False, user="u", password="pw")
    assert c.connect(s) is True
    # flags C0: user name + password, clean session 0; keep alive 300 = 01 2c; payload id, user, password
    assert tohex(s.out) == "1018" "00044d515454" "04" "c0" "012c" "00056e6f646531" "000175" "00027077"
    raises(ValueError, MQTTClient, "x", clock, password="pw")
    raises(ValueError, MQTTClient, "x", clock, keepalive=65536)


def test_connack_arrives_in_pieces():
    c, s, clock, _ = _client([b"\x20", b"\x02\x00", b"\x00"])
    assert c.connect(s) is False
    assert c.connected


def test_connack_refused_codes():
    for code in (1, 2, 3, 4, 5):
        c, s, clock, _ = _client([bytes([0x20, 0x02, 0x00, code])])
        e = raises(MQTTRefused, c.connect, s)
        assert e.code == code
        assert s.closed and not c.connected
    c, s, clock, _ = _client([unhex("20020005")])
    assert "not authorized" in str(raises(MQTTRefused, c.connect, s))


def test_connack_malformed():
    for bad in ("20030000", "30020000", "20020200"):  # length 3, PUBLISH, reserved ack flag bit set
        c, s, clock, _ = _client([unhex(bad) + b"\x00"])
        raises(MQTTProtocolError, c.connect, s)
        assert s.closed and not c.connected


def test_no_connack_times_out_after_timeout_ms():
    c, s, clock, _ = _client([], timeout_ms=3000)
    t0 = clock.monotonic_ms()
    raises(MQTTTimeout, c.connect, s)
    assert clock.monotonic_ms() - t0 == 3000
    assert s.closed and not c.connected


def test_connack_cut_short_times_out():
    c, s, clock, _ = _client([b"\x20\x02"])
    raises(MQTTTimeout, c.connect, s)
    assert s.closed


def test_publish_qos0_and_qos1_bytes():
    c, s, clock, _ = _connected()
    assert c.publish("a/b", b"hi") == 0
    assert tohex(s.out) == "3007" "0003612f62" "6869"  # 3.3: no packet id at QoS 0
    s.out = bytearray()
    assert c.publish(b"a/b", b"hi", qos=1, retain=True) == 1
    assert tohex(s.out) == "3309" "0003612f62" "0001" "6869"  # QoS 1 (bits 2-1), RETAIN (bit 0), id 1
    s.out = bytearray()
    assert c.publish(memoryview(b"a/b"), memoryview(bytearray(b"hi")), qos=1) == 2
    assert tohex(s.out) == "3209" "0003612f62" "0002" "6869"


def test_publish_two_byte_remaining_length_and_partial_sends():
    c, s, clock, _ = _connected(tx_size=300)
    s.max_send = 7
    payload = bytes(range(200))
    assert c.publish("t", payload, qos=1) == 1
    # RL = 2 + 1 + 2 + 200 = 205 = cd 01 (2.2.3)
    assert bytes(s.out) == unhex("32cd01" "000174" "0001") + payload
    raises(ValueError, c.publish, "t", bytes(300), 0)  # larger than tx_size
    raises(ValueError, c.publish, "t", b"", 2)  # QoS 2 is not supported


def test_packet_id_wraps_to_1():
    c, s, clock, _ = _connected()
    c._pid = 0xFFFE
    assert c.publish("t", b"", 1) == 0xFFFF
    assert c.publish("t", b"", 1) == 1  # 2.3.1: never 0
    assert tohex(s.out) == "3205" "000174" "ffff" "3205" "000174" "0001"


def test_subscribe_bytes_and_suback():
    c, s, clock, _ = _connected([unhex("9003000101")])
    assert c.subscribe("x/+", 1) == 1
    # 3.8: 82 (reserved bits 0010) | RL 8 | packet id 1 | "x/+" | requested QoS 1
    assert tohex(s.out) == "8208" "0001" "0003782f2b" "01"
    c, s, clock, _ = _connected([unhex("9003000180")])
    assert raises(MQTTRefused, c.subscribe, "#", 0).code == 0x80
    assert tohex(s.out) == "8206" "0001" "000123" "00"


def test_suback_of_another_packet_id_is_not_taken():
    c, s, clock, _ = _connected([unhex("9003000700")], timeout_ms=2000)
    t0 = clock.monotonic_ms()
    raises(MQTTTimeout, c.subscribe, "x", 1)
    assert clock.monotonic_ms() - t0 == 2000


def test_ping_and_disconnect_bytes():
    c, s, clock, _ = _connected([unhex("d000")])
    c.ping()
    assert tohex(s.out) == "c000"  # 3.12
    assert c._ping_out
    assert c.check(0) == 1
    assert not c._ping_out
    s.out = bytearray()
    c.disconnect()
    assert tohex(s.out) == "e000"  # 3.14
    assert s.closed and not c.connected
    c.disconnect()  # never raises


def test_incoming_publish_cut_up_is_delivered_and_acked():
    pkt = unhex("3209" "0003642f33" "1234" "0102")  # QoS 1, topic "d/3", id 0x1234, payload 01 02
    q0 = unhex("3006" "0003642f34" "ff")  # QoS 0, topic "d/4"
    c, s, clock, msgs = _connected([pkt[:1], pkt[1:4], pkt[4:], q0])
    assert c.check(0) == 2
    assert msgs == [(b"d/3", b"\x01\x02"), (b"d/4", b"\xff")]
    assert tohex(s.out) == "40021234"  # 3.4 PUBACK with the same packet id; none for QoS 0


def test_oversized_publish_is_drained_counted_and_acked():
    big = unhex("32ca01" "0003642f33" "0042") + bytes(195)  # RL 202 > rx_size 64
    c, s, clock, msgs = _connected([big[:100], big[100:], unhex("d000")], rx_size=64)
    c._ping_out = True
    assert c.check(0) == 2
    assert msgs == [] and c.dropped == 1
    assert tohex(s.out) == "40020042"
    assert not c._ping_out  # the PINGRESP after it was read in step


def test_wait_puback_skips_other_packets():
    dl = unhex("3006" "0003642f33" "07")
    c, s, clock, msgs = _connected([unhex("40020009"), dl, unhex("d000"), unhex("40020001")])
    pid = c.publish("u", b"x", 1)
    c.wait_puback(pid, 1000)
    assert msgs == [(b"d/3", b"\x07")]
    assert c.connected


def test_wait_puback_times_out():
    c, s, clock, msgs = _connected([unhex("40020002")])
    pid = c.publish("u", b"x", 1)
    t0 = clock.monotonic_ms()
    raises(MQTTTimeout, c.wait_puback, pid, 1500)
    assert clock.monotonic_ms() - t0 == 1500
    assert c.connected  # a late PUBACK is no broken stream; the caller decides


def test_end_of_stream_and_socket_errors_close():
    c, s, clock, _ = _connected()
    s.eof = True
    raises(MQTTClosed, c.check, 0)
    assert s.closed and not c.connected
    raises(MQTTClosed, c.publish, "t", b"", 0)
    c, s, clock, _ = _connected()
    s.closed = True  # write raises ECONNRESET
    raises(MQTTClosed, c.publish, "t", b"", 0)
    assert not c.connected


def test_malformed_packets_close():
    bad = ["30" "ffffffff7f",  # remaining length of 5 bytes (2.2.3 allows 4)
           "f0" "ffffff7f",  # reserved packet type 15, refused before its (huge) body is read
           "4202" "0001",  # PUBACK with reserved flag bits set (2.2.2)
           "4003" "000100",  # PUBACK of length 3
           "20020000",  # a second CONNACK
           "3402" "0000",  # QoS 2 PUBLISH (we never subscribe with QoS 2)
           "3203" "0005ff",  # topic length beyond the packet
           "3001" "00",  # too short for a topic length
           ]
    for b in bad:
        c, s, clock, _ = _connected([unhex(b)])
        raises(MQTTProtocolError, c.check, 0)
        assert s.closed and not c.connected, b


def test_keepalive_pingreq_and_missing_pingresp():
    c, s, clock, _ = _connected(keepalive=10, timeout_ms=2000)
    clock.advance_ms(9999)
    c.service()
    assert s.out == b""
    clock.advance_ms(1)
    c.service()
    assert tohex(s.out) == "c000"  # 3.1.2.10: a packet within every keep-alive period
    s.chunks = [unhex("d000")]
    c.service()
    assert not c._ping_out
    clock.advance_ms(10000)
    c.service()
    assert tohex(s.out) == "c000c000"
    clock.advance_ms(1999)
    c.service()
    clock.advance_ms(1)
    raises(MQTTTimeout, c.service)  # no PINGRESP: the connection is dropped
    assert s.closed and not c.connected


def test_publishing_resets_keepalive():
    c, s, clock, _ = _connected(keepalive=10)
    clock.advance_ms(8000)
    c.publish("t", b"", 0)
    clock.advance_ms(8000)
    c.service()
    assert tohex(s.out) == "3003000174"


# --- the link -----------------------------------------------------------------------------------------------
EUI = unhex("0011223344556677")
PFX = "citynode/0011223344556677/"


class FakeBroker:
    """Parses what the client sends (fixed header, remaining length) and answers like a broker: CONNACK,
    SUBACK (granting QoS 1), PUBACK unless `ack` is False, PINGRESP. Records publishes."""

    def __init__(self, clock):
        self.clock = clock
        self.ack = True
        self.down = False  # refuse TCP connections
        self.published = []  # (topic, payload, first byte)
        self.packets = []  # first byte of every packet
        self.socks = []
        self.attempts = 0

    # the socket module's part
    def getaddrinfo(self, host, port):
        return [(2, 1, 6, "", (host, port))]

    def socket(self):
        s = FakeSock(self.clock, peer=self._got)
        s.buf = bytearray()
        self.socks.append(s)
        s.connect = lambda addr: self._connect(s, addr)
        return s

    def _connect(self, s, addr):
        self.attempts += 1
        if self.down:
            raise OSError(errno.ECONNREFUSED)
        s.addr = addr

    def _got(self, s, data):
        s.buf += data
        while len(s.buf) >= 2:
            rl = 0
            i = 1
            mul = 1
            while True:
                if i >= len(s.buf):
                    return
                rl += (s.buf[i] & 0x7F) * mul
                mul *= 128
                i += 1
                if not s.buf[i - 1] & 0x80:
                    break
            if len(s.buf) < i + rl:
                return
            first = s.buf[0]
            body = bytes(s.buf[i:i + rl])
            s.buf = s.buf[i + rl:]
            self.packets.append(first)
            self._answer(s, first, body)

    def _answer(self, s, first, body):
        kind = first & 0xF0
        if kind == 0x10:
            s.chunks.append(CONNACK_OK)
        elif kind == 0x80:
            s.chunks.append(bytes([0x90, 3, body[0], body[1], 1]))
        elif kind == 0x30:
            nt = body[0] * 256 + body[1]
            topic = body[2:2 + nt].decode()
            p = 2 + nt + (2 if first & 6 else 0)
            self.published.append((topic, body[p:], first))
            if first & 6 and self.ack:
                s.chunks.append(bytes([0x40, 2, body[2 + nt], body[3 + nt]]))
        elif kind == 0xC0:
            s.chunks.append(b"\xd0\x00")

    def push(self, topic, payload, qos=1, pid=0x0101):
        # a PUBLISH from the broker to the newest connection
        t = topic.encode()
        body = bytes([len(t) >> 8, len(t) & 0xFF]) + t + (bytes([pid >> 8, pid & 0xFF]) if qos else b"") + payload
        self.socks[-1].chunks.append(bytes([0x30 | qos << 1, len(body)]) + body)


class FakeWlan:
    def __init__(self, polls=3):
        self.polls = polls  # isconnected() calls after connect() until it reports True
        self.calls = []
        self.up = False

    def active(self, on=None):
        self.calls.append(("active", on))

    def connect(self, ssid, key):
        self.calls.append(("connect", ssid, key))

    def isconnected(self):
        if self.up:
            return True
        if any(c[0] == "connect" for c in self.calls):
            self.polls -= 1
            self.up = self.polls < 0
        return self.up


def _link(**kw):
    clock = VirtualClock(start_s=kw.pop("start_s", 0))
    br = FakeBroker(clock)
    w = FakeWlan(kw.pop("polls", 3))
    link = MqttLink(w, "cityap", "secret", br, "broker.local", EUI, clock, **kw)
    return link, br, w, clock


def test_link_join_subscribes_and_publishes_on_port_topics():
    link, br, w, clock = _link()
    assert not link.joined
    link.join()
    assert link.joined and link.connected
    assert w.calls[:2] == [("active", True), ("connect", "cityap", "secret")]
    assert clock.monotonic_ms() == 300  # 100 ms steps until the WLAN reported up on the 4th poll
    s = br.socks[0]
    assert s.addr == ("broker.local", 1883) and s.timeout == 5
    # CONNECT with client id "cnode-" + DevEUI, then SUBSCRIBE <prefix>/<eui>/down/+ at QoS 1
    assert bytes(s.out[:36]).endswith(b"\x00\x16cnode-0011223344556677")
    t = (PFX + "down/+").encode()
    assert len(t) == 32
    assert bytes(s.out[36:]) == b"\x82\x25\x00\x01\x00\x20" + t + b"\x01"  # RL = 2 + 2 + 32 + 1
    assert link.max_payload() == 242
    frame = bytes(range(60))
    assert link.send(2, frame) is True
    assert link.send(3, memoryview(frame)[:5], True) is True and link.acked
    assert link.send(223, b"\x01") is True
    assert br.published == [(PFX + "up/2", frame, 0x30), (PFX + "up/3", frame[:5], 0x32),
                            (PFX + "up/223", b"\x01", 0x30)]
    assert link.downlink is None


def test_link_qos1_setting_and_limits():
    link, br, w, clock = _link(qos=1, prefix="city/x")
    raises(NotJoined, link.send, 2, b"x")
    link.join()
    assert link.send(12, b"x") is True
    assert br.published[-1] == ("city/x/0011223344556677/up/12", b"x", 0x32)
    e = raises(PayloadTooLong, link.send, 2, bytes(243))
    assert str(e) == "243 B > 242 B", e  # the uplink check every link makes; an MQTT link has no DR to name
    raises(ValueError, link.send, 0, b"x")
    raises(ValueError, link.send, 224, b"x")
    raises(ValueError, MqttLink, w, "a", "b", br, "h", EUI[:7], clock)


def test_link_downlinks_one_per_send_and_poll():
    link, br, w, clock = _link()
    link.join()
    br.push(PFX + "down/3", b"\x01\x02", pid=0x0A0B)
    br.push(PFX + "down/9", b"\x03", qos=0)
    br.push(PFX + "down/0", b"bad")  # port 0, not a number, above 223, another device: dropped
    br.push(PFX + "down/x", b"bad")
    br.push(PFX + "down/300", b"bad")
    br.push("citynode/FFFFFFFFFFFFFFFF/down/3", b"bad")
    assert link.send(2, b"a") is True
    assert link.downlink == (3, b"\x01\x02")
    assert link.dl_dropped == 4
    assert 0x40 in br.packets  # the QoS 1 downlink was acknowledged
    assert link.poll() is True and link.downlink == (9, b"\x03")
    assert link.poll() is False and link.downlink is None
    br.push(PFX + "down/5", b"\x05")
    assert link.poll(1000) is True and link.downlink == (5, b"\x05")


def test_link_confirmed_without_puback_is_not_acked_and_reconnects():
    link, br, w, clock = _link(ack_timeout_ms=3000)
    link.join()
    br.ack = False
    t0 = clock.monotonic_ms()
    assert link.send(2, b"a", True) is False
    assert clock.monotonic_ms() - t0 == 3000
    assert not link.acked and not link.connected
    br.ack = True
    assert link.send(2, b"b", True) is True and link.acked
    assert link.connects == 2 and len(br.socks) == 2


def test_link_broker_gone_reconnects_at_once_then_backs_off():
    link, br, w, clock = _link(backoff_ms=1000, backoff_max_ms=4000)
    link.join()
    br.socks[0].eof = True  # the broker closed the connection (restart)
    assert link.send(2, b"a") is True  # found dead before publishing, reopened at once
    assert link.connects == 2 and br.published[-1][1] == b"a"
    br.socks[1].eof = True
    br.down = True
    e = raises(LinkDown, link.send, 2, b"b")
    assert e.wait_ms == 1000 and br.attempts == 3
    e = raises(LinkDown, link.send, 2, b"b")  # within the back-off: no attempt
    assert e.wait_ms == 1000 and br.attempts == 3
    clock.advance_ms(1000)
    assert raises(LinkDown, link.send, 2, b"b").wait_ms == 2000
    clock.advance_ms(2000)
    assert raises(LinkDown, link.send, 2, b"b").wait_ms == 4000
    clock.advance_ms(4000)
    assert raises(LinkDown, link.send, 2, b"b").wait_ms == 4000  # capped at backoff_max_ms
    assert link.poll() is False  # poll never raises for a missing connection
    br.down = False
    clock.advance_ms(4000)
    assert link.send(2, b"c") is True
    assert link._backoff == 0 and br.published[-1][1] == b"c"


def test_link_keepalive_on_send_path():
    link, br, w, clock = _link(keepalive=30)
    link.join()
    clock.advance_ms(30000)
    assert link.poll() is False
    assert br.packets[-1] == 0xC0  # PINGREQ after 30 s without a packet
    assert link.connected


def test_link_join_wifi_timeout_and_backoff():
    link, br, w, clock = _link(polls=10 ** 6, wifi_timeout_ms=5000, backoff_ms=1000)
    e = raises(JoinFailed, link.join, 3)
    assert "not connected" in str(e)
    # three 5 s WLAN waits and back-offs of 1 s and 2 s between them
    assert clock.monotonic_ms() == 3 * 5000 + 1000 + 2000
    assert not link.joined and br.attempts == 0
    link, br, w, clock = _link()
    br.down = True
    raises(JoinFailed, link.join, 2)
    assert br.attempts == 2 and not link.joined
    br.down = False
    link.join(1)
    assert link.joined and link.connects == 1


def test_link_refused_connection_fails_join():
    link, br, w, clock = _link()
    br._answer_orig = br._answer

    def refuse(s, first, body):
        if first & 0xF0 == 0x10:
            s.chunks.append(unhex("20020004"))  # bad user name or password
        else:
            br._answer_orig(s, first, body)

    br._answer = refuse
    assert "bad user name" in str(raises(JoinFailed, link.join, 1))
    assert br.socks[0].closed


def test_link_close_sends_disconnect():
    link, br, w, clock = _link()
    link.join()
    link.close()
    assert br.packets[-1] == 0xE0 and not link.joined and br.socks[0].closed


class Thermo:
    """A temperature sensor whose value changes every reading."""

    channels = ("temperature",)

    def __init__(self):
        self.values = [None]
        self.n = 0

    def read(self):
        self.n += 1
        self.values[0] = 1500 + (self.n * 37) % 400


def _frame_head(f):
    # (t0, sample count) of a frame: CBOR [1, mask, bstr, ...] whose bit stream starts t0 (32) | eg0(n - 1)
    assert f[0] in (0x83, 0x84) and f[1] == 1
    p = 2
    p += {0x18: 2, 0x19: 3, 0x1A: 5}.get(f[p], 1)  # the channel mask (uint)
    p += 2 if f[p] == 0x58 else 1  # the byte string's head
    bits = "".join("{:08b}".format(b) for b in f[p:p + 12])
    z = bits.index("1", 32) - 32
    return int(bits[:32], 2), int(bits[32 + z:33 + 2 * z], 2)


def test_node_over_mqtt_rides_out_a_broker_outage():
    start = 850000000
    link, br, w, clock = _link(start_s=start, backoff_ms=60000, backoff_max_ms=600000)
    queue = Queue(FlashFS(), "/q")
    node = Node(clock, Sampler([Slot(Thermo())], clock), queue, link, interval_s=300, confirmed=True,
                commands=lambda port, data: b"\x01" + data)
    for i in range(72):  # 6 h of 5 min cycles; the broker is gone from 1 h 40 to 3 h 20
        if i == 20:
            br.socks[-1].eof = True
            br.down = True
        elif i == 40:
            br.down = False
        elif i == 50:
            br.push(PFX + "down/3", b"\x07")
        clock.sleep_ms(node.cycle())
    assert node.join_attempts == 1  # the link reconnected by itself
    assert node.errors > 0 and link.connects >= 2
    frames = [p for t, p, _ in br.published if t == PFX + "up/2"]
    heads = [_frame_head(f) for f in frames]
    # every sample reached the broker once, in order: counts add up and each frame starts where the last ended
    assert sum(n for _, n in heads) == 72 - node.pending == 72 - queue.depth
    assert heads[0][0] == start
    for (t0, n), (t1, _) in zip(heads, heads[1:]):
        assert t1 == t0 + 300 * n
    # the downlink reached the command handler, whose reply went out on port 3
    assert (PFX + "up/3", b"\x01\x07", 0x30) in br.published

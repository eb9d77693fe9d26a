# cnode.mqtt: a minimal MQTT 3.1.1 client (OASIS standard, 29 Oct 2014) over a socket object passed in.
#
# Our own, because micropython-lib's umqtt.simple is installed on a board with `mip` and is not on PyPI, so
# it cannot be installed or tested here; this one also bounds every wait and keeps its buffers preallocated.
# Packets: CONNECT/CONNACK (3.1, 3.2), PUBLISH QoS 0/1 (3.3), PUBACK (3.4), SUBSCRIBE/SUBACK (3.8, 3.9),
# PINGREQ/PINGRESP (3.12, 3.13), DISCONNECT (3.14). QoS 2 is neither sent nor requested.
# The socket needs the MicroPython stream calls write(buf, off, n) -> int and readinto(buf, n) -> int | None
# (0 = closed), plus settimeout(s) and close(): `socket.socket` has them on the ESP32 and the unix port; a
# timed-out read raises OSError(ETIMEDOUT) or returns None. Steady state allocates nothing per packet.
import errno

from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)  # 3.8.1: bits 3..0 of a SUBSCRIBE fixed header are 0010
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
_RL_MAX = const(268435455)  # 2.2.3: four bytes of remaining length
_NOWAIT = (errno.ETIMEDOUT, errno.EAGAIN)

# 3.2.2.3 CONNACK return codes
REFUSED = ("", "unacceptable protocol version", "identifier rejected", "server unavailable",
           "bad user name or password", "not authorized")


class MQTTError(Exception):
    """Base of the client's errors."""


class MQTTTimeout(MQTTError):
    """An expected reply (CONNACK, SUBACK, PUBACK, PINGRESP) or the rest of a packet did not arrive in time."""


class MQTTClosed(MQTTError):
    """The connection is closed or broken (end of stream, socket error); the client has dropped it."""


class MQTTProtocolError(MQTTError):
    """The server sent a malformed or unexpected packet; the client has dropped the connection."""


class MQTTRefused(MQTTError):
    """CONNACK refused the connection or SUBACK refused a subscription; `code` is the return code."""

    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


def put_rl(buf, pos, n):
    """Write remaining length n (2.2.3: 7 bits a byte, least significant first, bit 7 = more) at buf[pos:];
    returns the position after it."""
    if not 0 <= n <= _RL_MAX:
        raise ValueError("remaining length")
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            buf[pos] = b | 0x80
            pos += 1
        else:
            buf[pos] = b
            return pos + 1


def _put_str(buf, pos, s):
    # 1.5.3: UTF-8 string = 2-byte big-endian length + bytes
    n = len(s)
    buf[pos] = n >> 8
    buf[pos + 1] = n & 0xFF
    buf[pos + 2:pos + 2 + n] = s
    return pos + 2 + n


def _b(s):
    return s.encode() if isinstance(s, str) else bytes(s)


class MQTTClient:
    """One MQTT 3.1.1 session over a connected socket given to connect(). `clock` has the time API
    (ticks_ms, ticks_diff); `on_message(topic, payload)` receives each PUBLISH as memoryviews of the receive
    buffer, valid only during the call. Incoming packets larger than `rx_size` are read, dropped, counted
    in .dropped (and acknowledged when QoS 1); outgoing packets must fit `tx_size`."""

    def __init__(self, client_id, clock, keepalive=60, clean=True, user=None, password=None, timeout_ms=5000,
                 tx_size=320, rx_size=320, on_message=None):
        self.client_id = _b(client_id)
        if not 0 <= keepalive <= 0xFFFF:
            raise ValueError("keepalive is 0..65535 s")
        self.clock = clock
        self.keepalive = keepalive
        self.clean = clean
        self.user = None if user is None else _b(user)
        self.password = None if password is None else _b(password)
        if self.password is not None and self.user is None:
            raise ValueError("a password needs a user name")  # 3.1.2.9
        self.timeout_ms = timeout_ms
        self._to_s = timeout_ms / 1000
        self.on_message = on_message
        self.sock = None
        self.session_present = False
        self.dropped = 0
        self.last_puback = 0  # packet id of the last PUBACK received
        self._pid = 0
        self._tx = bytearray(tx_size)
        self._txv = memoryview(self._tx)
        self._rx = bytearray(rx_size)
        self._rxv = memoryview(self._rx)
        self._hdr = memoryview(bytearray(4))
        self._suback = -1
        self._sub_pid = 0
        self._to = -1  # socket timeout in force (ms), -1 unknown
        self._last_tx = 0
        self._ping_at = 0
        self._ping_out = False

    @property
    def connected(self):
        return self.sock is not None

    # --- socket -------------------------------------------------------------------------------------------
    def close(self):
        """Drop the connection without DISCONNECT (the broker then publishes the will, if any)."""
        s = self.sock
        self.sock = None
        self._ping_out = False
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _timeout(self, ms):
        if ms != self._to:
            # seconds as a float; the usual value is made once (a float is a heap object on the ESP32)
            self.sock.settimeout(self._to_s if ms == self.timeout_ms else ms / 1000 if ms else 0)  # type: ignore
            self._to = ms

    def _write(self, n):
        mv = self._txv
        pos = 0
        self._timeout(self.timeout_ms)
        try:
            while pos < n:
                k = self.sock.write(mv, pos, n - pos)  # type: ignore  # stream write(buf, off, len): no slice
                if not k:
                    raise OSError(errno.EAGAIN)
                pos += k
        except OSError as e:
            self.close()
            raise MQTTClosed("send: %s" % (e,))
        self._last_tx = self.clock.ticks_ms()

    def _read(self, mv, n, wait_ms):
        # Read n bytes into mv; False if nothing at all arrived within wait_ms (0: only what is there now).
        # Once a packet has started, the rest must follow within timeout_ms.
        got = 0
        started = False
        while got < n:
            self._timeout(self.timeout_ms if started else wait_ms)
            try:
                k = self.sock.readinto(mv[got:n] if got else mv, n - got)  # type: ignore
            except OSError as e:
                if e.args[0] not in _NOWAIT:
                    self.close()
                    raise MQTTClosed("recv: %s" % (e,))
                k = None
            if k is None:  # nothing within the timeout
                if not started:
                    return False
                self.close()
                raise MQTTTimeout("packet cut short")
            if k == 0:
                self.close()
                raise MQTTClosed("closed by the server")
            got += k
            started = True
        return True

    # --- packets out --------------------------------------------------------------------------------------
    def _next_pid(self):
        # 2.3.1: non-zero 16-bit packet identifier
        p = self._pid + 1
        if p > 0xFFFF:
            p = 1
        self._pid = p
        return p

    def connect(self, sock):
        """Send CONNECT (3.1) on `sock` (already connected) and wait for CONNACK (3.2). Returns the
        session-present flag. Raises MQTTRefused (.code 1..5), MQTTTimeout, MQTTClosed, MQTTProtocolError."""
        self.close()
        self.sock = sock
        self._to = -1
        cid, user, pw = self.client_id, self.user, self.password
        rl = 10 + 2 + len(cid)
        flags = 0x02 if self.clean else 0  # 3.1.2.4 clean session
        if user is not None:
            rl += 2 + len(user)
            flags |= 0x80  # 3.1.2.8
        if pw is not None:
            rl += 2 + len(pw)
            flags |= 0x40  # 3.1.2.9
        b = self._tx
        b[0] = _CONNECT
        p = put_rl(b, 1, rl)
        p = _put_str(b, p, b"MQTT")  # 3.1.2.1 protocol name
        b[p] = 4  # 3.1.2.2 protocol level 3.1.1
        b[p + 1] = flags  # 3.1.2.3 connect flags
        b[p + 2] = self.keepalive >> 8  # 3.1.2.10 keep alive, seconds
        b[p + 3] = self.keepalive & 0xFF
        p = _put_str(b, p + 4, cid)  # 3.1.3.1 client identifier
        if user is not None:
            p = _put_str(b, p, user)
        if pw is not None:
            p = _put_str(b, p, pw)
        self._write(p)
        h = self._hdr
        if not self._read(h, 4, self.timeout_ms):
            self.close()
            raise MQTTTimeout("no CONNACK")
        if h[0] != _CONNACK or h[1] != 2 or h[2] & 0xFE:  # 3.2.1, 3.2.2.1: reserved flag bits are 0
            self.close()
            raise MQTTProtocolError("not a CONNACK: %02x %02x %02x" % (h[0], h[1], h[2]))
        rc = h[3]
        if rc:
            self.close()
            raise MQTTRefused("connection refused: %s" % (REFUSED[rc] if rc < 6 else rc), rc)
        self.session_present = bool(h[2] & 1)
        self._ping_out = False
        return self.session_present

    def publish(self, topic, msg, qos=0, retain=False):
        """Send PUBLISH (3.3) with QoS 0 or 1; returns the packet id (0 for QoS 0). Does not wait for the
        PUBACK: see wait_puback()."""
        if qos not in (0, 1):
            raise ValueError("QoS 0 or 1")
        if self.sock is None:
            raise MQTTClosed("not connected")
        if isinstance(topic, str):
            topic = topic.encode()
        nt = len(topic)
        nm = len(msg)
        rl = 2 + nt + (2 if qos else 0) + nm
        if 5 + rl > len(self._tx):
            raise ValueError("packet larger than tx_size")
        b = self._tx
        b[0] = _PUBLISH | (qos << 1) | (1 if retain else 0)  # 3.3.1: DUP 0, QoS bits 2..1, RETAIN bit 0
        p = _put_str(b, put_rl(b, 1, rl), topic)  # 3.3.2.1 topic name
        pid = 0
        if qos:
            pid = self._next_pid()
            b[p] = pid >> 8  # 3.3.2.2 packet identifier
            b[p + 1] = pid & 0xFF
            p += 2
        b[p:p + nm] = msg  # 3.3.3 payload
        self._write(p + nm)
        return pid

    def subscribe(self, topic, qos=1):
        """Send SUBSCRIBE (3.8) for one topic filter and wait for its SUBACK (3.9); returns the granted QoS.
        Raises MQTTRefused (code 0x80) when the server refuses."""
        if qos not in (0, 1):
            raise ValueError("QoS 0 or 1")
        if self.sock is None:
            raise MQTTClosed("not connected")
        topic = _b(topic)
        pid = self._next_pid()
        b = self._tx
        b[0] = _SUBSCRIBE
        p = put_rl(b, 1, 2 + 2 + len(topic) + 1)
        b[p] = pid >> 8  # 3.8.2 packet identifier
        b[p + 1] = pid & 0xFF
        p = _put_str(b, p + 2, topic)  # 3.8.3 topic filter + requested QoS
        b[p] = qos
        self._write(p + 1)
        self._suback = -1
        self._sub_pid = pid
        deadline = self.clock.ticks_add(self.clock.ticks_ms(), self.timeout_ms)
        while self._suback < 0:
            left = self.clock.ticks_diff(deadline, self.clock.ticks_ms())
            if left <= 0 or not self._packet(left):
                raise MQTTTimeout("no SUBACK")
        if self._suback == 0x80:
            raise MQTTRefused("subscription to %s refused" % (topic,), 0x80)
        return self._suback

    def _short(self, first):
        b = self._tx
        b[0] = first
        b[1] = 0
        self._write(2)

    def ping(self):
        """Send PINGREQ (3.12); check()/service() take the PINGRESP (3.13)."""
        if self.sock is None:
            raise MQTTClosed("not connected")
        self._short(_PINGREQ)
        self._ping_out = True
        self._ping_at = self._last_tx

    def disconnect(self):
        """Send DISCONNECT (3.14) if connected, then close the socket; never raises."""
        if self.sock is not None:
            try:
                self._short(_DISCONNECT)
            except MQTTError:
                pass
        self.close()

    # --- packets in ---------------------------------------------------------------------------------------
    def _packet(self, wait_ms):
        """Read and handle one packet if one starts within wait_ms; True if one was handled."""
        h = self._hdr
        if not self._read(h, 1, wait_ms):
            return False
        first = h[0]
        kind = first & 0xF0
        if kind not in (_PUBLISH, _PUBACK, _SUBACK, _PINGRESP):  # all a client may receive after CONNACK
            self._expect(False, "packet type %02x" % first)
        rl = 0
        shift = 0
        while True:  # 2.2.3 remaining length
            self._read(h, 1, self.timeout_ms)
            rl |= (h[0] & 0x7F) << shift
            if not h[0] & 0x80:
                break
            shift += 7
            if shift > 21:
                self.close()
                raise MQTTProtocolError("remaining length longer than 4 bytes")
        rx = self._rxv
        size = len(rx)
        n = rl if rl <= size else size
        if n:
            self._read(rx, n, self.timeout_ms)
        if rl > n:  # too big for the buffer: drain the rest and drop the packet (a PUBLISH is still acked)
            pid = -1
            if kind == _PUBLISH and first & 0x06:
                p = 2 + ((rx[0] << 8) | rx[1])
                if p + 2 > n:
                    self.close()
                    raise MQTTProtocolError("PUBLISH topic longer than rx_size")
                pid = (rx[p] << 8) | rx[p + 1]
            left = rl - n
            while left:
                k = left if left <= size else size
                self._read(rx, k, self.timeout_ms)
                left -= k
            self.dropped += 1
            if pid >= 0:
                self._puback(pid)
            return True
        if kind == _PUBLISH:
            self._on_publish(first, rl)
        elif kind == _PUBACK:
            self._expect(first == _PUBACK and rl == 2, "PUBACK")
            self.last_puback = (rx[0] << 8) | rx[1]
        elif kind == _SUBACK:
            self._expect(first == _SUBACK and rl == 3, "SUBACK")  # one topic filter per SUBSCRIBE
            if (rx[0] << 8) | rx[1] == self._sub_pid:
                self._suback = rx[2]
        else:
            self._expect(first == _PINGRESP and rl == 0, "PINGRESP")
            self._ping_out = False
        return True

    def _expect(self, ok, what):
        if not ok:
            self.close()
            raise MQTTProtocolError("malformed or unexpected " + what)

    def _on_publish(self, first, rl):
        rx = self._rxv
        qos = (first >> 1) & 3
        self._expect(rl >= 2, "PUBLISH")
        p = 2 + ((rx[0] << 8) | rx[1])
        self._expect(qos < 2 and p + (2 if qos else 0) <= rl, "PUBLISH")  # we subscribe with QoS <= 1
        topic = rx[2:p]
        pid = 0
        if qos:
            pid = (rx[p] << 8) | rx[p + 1]
            p += 2
        if self.on_message is not None:
            self.on_message(topic, rx[p:rl])
        if qos:  # 3.4: answer QoS 1 with PUBACK after handing the message on
            self._puback(pid)

    def _puback(self, pid):
        b = self._tx
        b[0] = _PUBACK
        b[1] = 2
        b[2] = pid >> 8
        b[3] = pid & 0xFF
        self._write(4)

    def check(self, wait_ms=0):
        """Handle every packet that arrives, waiting up to wait_ms for the first; returns how many."""
        if self.sock is None:
            raise MQTTClosed("not connected")
        n = 0
        while self._packet(0 if n else wait_ms):
            n += 1
        return n

    def wait_puback(self, pid, timeout_ms):
        """Handle incoming packets until the PUBACK of `pid` arrives; raises MQTTTimeout after timeout_ms."""
        clock = self.clock
        deadline = clock.ticks_add(clock.ticks_ms(), timeout_ms)
        self.last_puback = 0
        while self.last_puback != pid:
            if self.sock is None:
                raise MQTTClosed("not connected")
            left = clock.ticks_diff(deadline, clock.ticks_ms())
            if left <= 0 or not self._packet(left):
                raise MQTTTimeout("no PUBACK for packet %d" % pid)

    def service(self):
        """Keep-alive (3.1.2.10): send PINGREQ once keepalive seconds passed since our last packet, and drop
        the connection (MQTTTimeout) when its PINGRESP is not in within timeout_ms; then handle what is
        waiting. Call it at least every keepalive/2 seconds while connected."""
        self.check(0)
        now = self.clock.ticks_ms()
        if self._ping_out:
            if self.clock.ticks_diff(now, self._ping_at) >= self.timeout_ms:
                self.close()
                raise MQTTTimeout("no PINGRESP")
        elif self.keepalive and self.clock.ticks_diff(now, self._last_tx) >= self.keepalive * 1000:
            self.ping()

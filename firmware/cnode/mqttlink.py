# cnode.mqttlink: the WiFi + MQTT uplink, a drop-in for the LoRaWAN MAC as the Node's `link`.
#
# The same CBOR frames as on LoRaWAN, published to <prefix>/<DEVEUI>/up/<port> (QoS 1 and a bounded wait for
# the PUBACK when confirmed, else the `qos` setting); downlinks are published by the platform to
# <prefix>/<DEVEUI>/down/<port> (subscribed with QoS 1) and handed over one per send()/poll() in .downlink,
# as the MAC does after its receive windows. DEVEUI is 16 upper-case hex digits.
# Errors follow the MAC: join() raises JoinFailed, send() NotJoined / PayloadTooLong, and LinkDown (with
# .wait_ms, like DutyCycleError) while the broker cannot be reached and the reconnect back-off is running.
from micropython import const

from cnode.encoder import LIMIT_MAX
from cnode.lorawan import JoinFailed, NotJoined, check_uplink
from cnode.mqtt import MQTTClient, MQTTError, MQTTTimeout

_DL_MAX = const(4)  # downlinks kept until handed over; older ones are dropped first
_WIFI_STEP_MS = const(100)


class LinkDown(Exception):
    """No broker connection and none allowed now (back-off) or possible; `wait_ms`: when to try again."""

    def __init__(self, msg, wait_ms):
        super().__init__(msg)
        self.wait_ms = wait_ms


class WifiTimeout(Exception):
    """The WLAN did not connect within wifi_timeout_ms."""


class MqttLink:
    """WiFi + MQTT link. `wlan` is network.WLAN(network.STA_IF) or alike (active, connect(ssid, key),
    isconnected); `socket` the socket module or alike (getaddrinfo, socket); `clock` the time API;
    `dev_eui` 8 bytes. Reconnects (WLAN, TCP, MQTT session, subscription) with a doubling back-off from
    backoff_ms to backoff_max_ms, reset once a frame got through. The keep-alive (s) outlasts the node's
    5 min cycle, so a session kept over a light-sleep cycle needs no PINGREQ; call poll() more often than
    that to keep it anyway (after deep sleep the node joins again)."""

    def __init__(self, wlan, ssid, key, socket, host, dev_eui, clock, port=1883, prefix="citynode", qos=0,
                 keepalive=600, clean=True, user=None, password=None, client_id=None, wifi_timeout_ms=20000,
                 timeout_ms=5000, ack_timeout_ms=5000, backoff_ms=1000, backoff_max_ms=300000):
        if len(dev_eui) != 8:
            raise ValueError("DevEUI is 8 bytes")
        if qos not in (0, 1):
            raise ValueError("QoS 0 or 1")
        eui = "".join("%02X" % b for b in dev_eui)
        self.wlan = wlan
        self.ssid = ssid
        self.key = key
        self.socket = socket
        self.host = host
        self.port = port
        self.clock = clock
        self.qos = qos
        self.wifi_timeout_ms = wifi_timeout_ms
        self.timeout_ms = timeout_ms
        self.ack_timeout_ms = ack_timeout_ms
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        base = "%s/%s/" % (prefix, eui)
        up = (base + "up/").encode()
        self._up_n = len(up)
        self._up = bytearray(up + b"000")  # the port's digits are written in place
        self._upv = memoryview(self._up)
        self._topic_port = 0
        self._topic_mv = self._upv
        self._down = (base + "down/").encode()
        # PUBLISH: fixed header <= 5 B, topic length 2 B, topic, packet id 2 B, frame
        tx = 5 + 2 + len(self._up) + 2 + LIMIT_MAX
        self.client = MQTTClient(client_id or "cnode-" + eui, clock, keepalive=keepalive, clean=clean,
                                 user=user, password=password, timeout_ms=timeout_ms, tx_size=tx,
                                 rx_size=64 + len(self._down) + LIMIT_MAX, on_message=self._on_message)
        self.joined = False
        self.downlink = None
        self.acked = False
        self.connects = 0  # MQTT sessions opened
        self.dl_dropped = 0  # downlinks on a bad topic or beyond _DL_MAX
        self.last_error = None
        self._dl = []
        self._backoff = 0
        self._retry_at = 0

    @property
    def connected(self):
        return self.client.connected

    def max_payload(self):
        """Largest frame: the encoder's maximum (MQTT itself would carry far more)."""
        return LIMIT_MAX

    # --- connection ---------------------------------------------------------------------------------------
    def _wifi(self):
        w = self.wlan
        if w.isconnected():
            return
        w.active(True)
        w.connect(self.ssid, self.key)
        clock = self.clock
        t0 = clock.ticks_ms()
        while not w.isconnected():
            if clock.ticks_diff(clock.ticks_ms(), t0) >= self.wifi_timeout_ms:
                raise WifiTimeout("WLAN %s not connected after %d ms" % (self.ssid, self.wifi_timeout_ms))
            clock.sleep_ms(_WIFI_STEP_MS)

    def _open(self):
        # WLAN up, TCP connect, CONNECT/CONNACK, SUBSCRIBE/SUBACK; every step bounded
        self.client.close()
        self._wifi()
        sm = self.socket
        addr = sm.getaddrinfo(self.host, self.port)[0][-1]
        s = sm.socket()
        try:
            s.settimeout(self.timeout_ms / 1000)
            s.connect(addr)
        except OSError:
            s.close()
            raise
        c = self.client
        c.connect(s)
        c.subscribe(self._down + b"+", 1)
        self.connects += 1

    def _failed(self, e):
        self.client.close()
        self.last_error = e
        b = self._backoff * 2 if self._backoff else self.backoff_ms
        self._backoff = b if b < self.backoff_max_ms else self.backoff_max_ms
        self._retry_at = self.clock.ticks_add(self.clock.ticks_ms(), self._backoff)

    def join(self, attempts=3, wait_ms=-1):
        """Bring the WLAN up and open the MQTT session; up to `attempts` tries spaced by the back-off.
        Raises JoinFailed with the last reason."""
        if self.joined and self.client.connected:
            return
        for i in range(attempts):
            if i:
                self.clock.sleep_ms(self._backoff)
            try:
                self._open()
            except (MQTTError, OSError, WifiTimeout) as e:
                self._failed(e)
                continue
            self._backoff = 0
            self.joined = True
            return
        raise JoinFailed("WiFi/MQTT: %s" % (self.last_error,))

    def _ensure(self):
        # Take what arrived, keep the session alive, and reconnect if it is gone and the back-off allows.
        c = self.client
        if c.connected:
            try:
                c.service()
            except MQTTError as e:
                self.last_error = e  # the client has closed the connection
        if c.connected:
            return
        if self._backoff:
            left = self.clock.ticks_diff(self._retry_at, self.clock.ticks_ms())
            if left > 0:
                raise LinkDown("reconnect in %d ms" % left, left)
        try:
            self._open()
        except (MQTTError, OSError, WifiTimeout) as e:
            self._failed(e)
            raise LinkDown("broker: %s" % (e,), self._backoff)

    def close(self):
        """End the session (DISCONNECT); join() opens a new one."""
        self.client.disconnect()
        self.joined = False

    # --- traffic ------------------------------------------------------------------------------------------
    def _on_message(self, topic, payload):
        d = self._down
        n = len(d)
        port = 0
        if len(topic) > n and len(topic) <= n + 3 and bytes(topic[:n]) == d:
            for i in range(n, len(topic)):
                ch = topic[i]
                if not 0x30 <= ch <= 0x39:
                    port = 0
                    break
                port = port * 10 + ch - 0x30
        if not 1 <= port <= 223:
            self.dl_dropped += 1
            return
        if len(self._dl) >= _DL_MAX:
            self._dl.pop(0)
            self.dl_dropped += 1
        self._dl.append((port, bytes(payload)))

    def _topic(self, port):
        if port == self._topic_port:
            return self._topic_mv
        b = self._up
        p = self._up_n
        if port >= 100:
            b[p] = 0x30 + port // 100
            p += 1
        if port >= 10:
            b[p] = 0x30 + port // 10 % 10
            p += 1
        b[p] = 0x30 + port % 10
        self._topic_port = port
        self._topic_mv = self._upv[:p + 1]
        return self._topic_mv

    def send(self, port, data, confirmed=False):
        """Publish one frame. Confirmed: QoS 1, returns whether its PUBACK came within ack_timeout_ms (if not,
        the connection is dropped and reopened on the next call). Raises NotJoined, PayloadTooLong, LinkDown.
        Afterwards .downlink holds (port, bytes) of one downlink received, or None."""
        check_uplink(self, port, len(data))
        self.downlink = None
        self.acked = False
        c = self.client
        topic = self._topic(port)
        qos = 1 if confirmed else self.qos
        for attempt in range(2):  # a connection found dead while sending is reopened once at once
            self._ensure()
            try:
                pid = c.publish(topic, data, qos)
                if confirmed:
                    c.wait_puback(pid, self.ack_timeout_ms)
                    self.acked = True
                else:
                    c.check(0)
            except MQTTTimeout as e:  # no PUBACK: the frame may or may not have arrived; not acknowledged
                self.last_error = e
                c.close()
                self._handover()
                return False
            except MQTTError as e:
                self.last_error = e
                c.close()
                if attempt:
                    self._failed(e)
                    raise LinkDown("send: %s" % (e,), self._backoff)
                continue
            self._backoff = 0
            break
        self._handover()
        return True

    def poll(self, wait_ms=0):
        """Take incoming downlinks (waiting up to wait_ms for one), keep the session alive and reconnect
        when allowed; True if .downlink now holds one. Never raises for a missing connection."""
        if not self.joined:
            raise NotJoined("join first")
        self.downlink = None
        try:
            self._ensure()
            if not self._dl:
                self.client.check(wait_ms)
        except LinkDown:
            pass
        except MQTTError as e:
            self.last_error = e
        self._handover()
        return self.downlink is not None

    def _handover(self):
        if self._dl:
            self.downlink = self._dl.pop(0)

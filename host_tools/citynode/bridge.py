"""The MQTT bridge: takes uplinks from a network server's MQTT integration, decodes them and publishes SenML
per device. An incoming message is acknowledged only after its result is published (QoS 1, persistent
session), so a crash at any moment loses nothing the broker has delivered: unacknowledged messages come again.
A stop (SIGTERM) finishes what is in flight first, so a restart repeats nothing."""
from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .decoder import Stats, decode_uplink
from .errors import UsageError
from .outputs import senml_pack
from .payload import PayloadError
from .uplink import UplinkError, parse_chirpstack, parse_ttn

log = logging.getLogger("citynode.bridge")
ERRORS_TOPIC = "_errors"
INPUTS = {"ttn": parse_ttn, "chirpstack": parse_chirpstack}
OUT_WINDOW = 1000  # outputs published but not yet acknowledged by the broker, at most


def parse_broker(url: str) -> tuple[str, int]:
    """mqtt://HOST:PORT (port 1883 when left out) -> (host, port)."""
    u = urlsplit(url if "://" in url else f"mqtt://{url}")
    if u.scheme != "mqtt" or not u.hostname:
        raise UsageError(f"broker must be mqtt://HOST:PORT, not {url!r}")
    try:
        return u.hostname, u.port or 1883
    except ValueError:
        raise UsageError(f"bad port in {url!r}") from None


def _topic_part(s: str) -> str:
    return "".join("_" if c in "/+#\0" else c for c in s) or "_"


def convert(payload: bytes, kind: str) -> tuple[str | None, dict | list]:
    """One incoming message -> (device, SenML pack); raises ValueError (UplinkError, PayloadError) if bad."""
    try:
        msg = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UplinkError(f"bad JSON: {e}") from None
    if not isinstance(msg, dict):
        raise UplinkError("expected a JSON object")
    up = INPUTS[kind](msg)
    samples, _warnings = decode_uplink(up, None, Stats())
    return up.device, senml_pack(samples, up.device)


@dataclass
class Counters:
    received: int = 0
    published: int = 0
    errors: int = 0
    acked: int = 0
    connects: int = 0


class Bridge:
    """Subscribes to `subscribe` (as `$share/GROUP/...` with a group) and publishes to `publish`/<dev_eui>.

    run() blocks, reconnecting with exponential back-off (min_delay doubling up to max_delay seconds);
    stop() ends it from another thread or a signal handler, after up to drain_s seconds for outputs still in
    flight. Delivery is at least once: a message whose result was published but not yet acknowledged when the
    bridge died is decoded again.
    """

    def __init__(self, host: str, port: int, kind: str, subscribe: str, publish: str, group: str | None = None,
                 client_id: str | None = None, session_expiry: int = 3600, min_delay: float = 1,
                 max_delay: float = 60, keepalive: int = 30, receive_maximum: int = 100, drain_s: float = 5):
        if kind not in INPUTS:
            raise UsageError(f"unknown input kind {kind!r} (one of {', '.join(INPUTS)})")
        self.host, self.port, self.kind = host, port, kind
        self.topic = f"$share/{group}/{subscribe}" if group else subscribe
        self.prefix = publish.rstrip("/")
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.receive_maximum = receive_maximum
        self.drain_s = drain_s  # on stop: how long to wait for the broker to acknowledge outputs in flight
        self.counters = Counters()
        self._stop = threading.Event()
        # messages in the order they arrived: [mid, qos, done]; acknowledged in that order once done
        self._pending: deque[list] = deque()
        self._by_out_mid: dict[int, list] = {}
        self._backlog: deque[tuple[str, str, list]] = deque()
        cid = client_id or f"citynode-bridge-{socket.gethostname()}-{os.getpid()}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=MQTTProtocolVersion.MQTTv5,
                        manual_ack=True)
        c.reconnect_delay_set(min_delay, max_delay)  # type: ignore[arg-type]  # paho doubles the delay
        c.max_inflight_messages_set(receive_maximum)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        self.client = c

    # --- paho callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        self.counters.connects += 1
        # outputs not yet acknowledged by the broker are re-sent by paho; their inputs stay pending
        log.info("connected to %s:%s (session present: %s); subscribing to %s", self.host, self.port,
                 flags.session_present, self.topic)
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused the subscription to %s: %s", self.topic, reason_codes[0])
        else:
            log.info("subscribed to %s", self.topic)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._stop.is_set():
            log.warning("disconnected from %s:%s (%s); reconnecting", self.host, self.port, reason_code)
        # inputs whose outputs were not confirmed will be redelivered by the broker (persistent session)
        self._pending.clear()
        self._by_out_mid.clear()
        self._backlog.clear()

    def _on_message(self, client, userdata, msg):
        if self._stop.is_set():  # stopping: left unacknowledged, the broker redelivers it to the next session
            return
        self.counters.received += 1
        entry = [msg.mid, msg.qos, False]
        self._pending.append(entry)
        try:
            device, pack = convert(msg.payload, self.kind)
        except Exception as e:  # noqa: BLE001 - an exception here would stop paho's network thread
            self.counters.errors += 1
            reason = str(e) if isinstance(e, (UplinkError, PayloadError)) else f"internal error: {e!r}"
            log.error("message on %s: %s", msg.topic, reason)
            record = {"topic": msg.topic, "error": reason, "time": time.time(),
                      "payload_b64": base64.b64encode(msg.payload[:4096]).decode()}
            self._publish(client, f"{self.prefix}/{ERRORS_TOPIC}", json.dumps(record), entry)
            return
        if not pack:  # nothing measured (flags only): nothing to publish
            entry[2] = True
            self._ack_ready(client)
            return
        self._publish(client, f"{self.prefix}/{_topic_part(device or 'unknown')}", json.dumps(pack), entry)

    def _publish(self, client, topic: str, payload: str, entry: list) -> None:
        # Outputs waiting for the broker's PUBACK stay below OUT_WINDOW; more wait in our backlog. (Mosquitto
        # 2.0.11 was seen to send far more than our Receive Maximum; paho numbers its queue modulo 65536.)
        if self._backlog or len(self._by_out_mid) >= OUT_WINDOW:
            self._backlog.append((topic, payload, entry))
            return
        info = client.publish(topic, payload, qos=1)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self._backlog.append((topic, payload, entry))
            return
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: paho sends it later
            log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        self._by_out_mid[info.mid] = entry

    def _drain(self, client) -> None:
        while self._backlog and len(self._by_out_mid) < OUT_WINDOW:
            topic, payload, entry = self._backlog.popleft()
            info = client.publish(topic, payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self._backlog.appendleft((topic, payload, entry))
                return
            self._by_out_mid[info.mid] = entry

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        entry = self._by_out_mid.get(mid)
        if entry is None:
            return
        self.counters.published += 1
        entry[2] = True
        self._ack_ready(client)
        # only now is it no longer in flight: a stopping run() waits until nothing is, then disconnects; had the
        # entry gone first, its input's PUBACK could be queued after the DISCONNECT and the input come again
        del self._by_out_mid[mid]
        self._drain(client)

    def _ack_ready(self, client) -> None:
        pending = self._pending
        while pending and pending[0][2]:
            mid, qos, _ = pending.popleft()
            if qos:
                client.ack(mid, qos)
            self.counters.acked += 1

    # --- running ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Connect (retrying) and process messages on paho's network thread until stop()."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry  # the session (and unacked messages) outlive a crash
        props.ReceiveMaximum = self.receive_maximum
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()  # its thread reconnects with back-off after any failure, the first included
        try:
            while not self._stop.wait(0.2):
                pass
            # a stop takes no new input but lets what is in flight finish (bounded): outputs acknowledged by
            # the broker get their inputs acknowledged, so the next session re-sends as little as possible
            end = time.monotonic() + self.drain_s
            while (self._by_out_mid or self._backlog) and self.client.is_connected() and time.monotonic() < end:
                time.sleep(0.02)
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def stop(self) -> None:
        """Ask run() to disconnect and return (safe from a signal handler or another thread)."""
        self._stop.set()

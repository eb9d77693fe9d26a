"""The MQTT bridge: takes uplinks from a network server's MQTT integration, decodes them and delivers them to an
output (SenML per device on MQTT, or a SensorThings server), each uplink once.

Delivery contract (docs/platform.md): an uplink is acknowledged to the broker only after its output is durable
(the broker's PUBACK, or the server's answer), so nothing the broker delivered is lost; it is recorded on disk by
(device, FCnt, payload) before that acknowledgement, so a redelivery (after a crash, a reconnect or a restart) is
dropped. Gaps in a device's FCnt are counted and reported on the errors topic: what was lost before the broker."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import queue
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from citynode.bridge.state import DeliveryState
from citynode.payload.downlink import FPORT as STATUS_FPORT
from citynode.payload.downlink import decode_status
from citynode.payload.decode import Stats, decode_uplink
from citynode.errors import CitynodeError, InputError
from citynode.payload.outputs import senml_pack
from citynode.payload.frame import PayloadError
from citynode.payload.uplink import Uplink, UplinkError, parse_chirpstack, parse_ttn

log = logging.getLogger("citynode.bridge.core")
ERRORS_TOPIC = "_errors"
INPUTS = {"ttn": parse_ttn, "chirpstack": parse_chirpstack}
# A stock Mosquitto keeps at most 1,000 messages (max_queued_messages) for a session that is away, and drops
# the rest. The bridge holds SESSIONS sessions in one shared subscription, so the broker keeps SESSIONS x 1,000
# for it while it is down; when it is up, each session lets the broker send RECEIVE_MAXIMUM unacknowledged
# messages ahead (in flight: never dropped), so a burst waits in our memory instead of the broker's queue.
SESSIONS = 8
RECEIVE_MAXIMUM = 8192
BATCH = 500  # uplinks delivered and acknowledged together at most
TAKEN_OVER = 142  # MQTT v5 reason code: another client connected with our client id
BARRIER_TOPIC = "citynode-bridge/barrier"  # never subscribed: unsubscribing from it is a round trip


class BridgeError(CitynodeError):
    pass


class OutputDown(Exception):
    """The output cannot take deliveries now (server down, 5xx, timeout): the bridge retries later."""


def parse_broker(url: str) -> tuple[str, int]:
    """mqtt://HOST:PORT (port 1883 when left out) -> (host, port)."""
    u = urlsplit(url if "://" in url else f"mqtt://{url}")
    if u.scheme != "mqtt" or not u.hostname:
        raise InputError(f"broker must be mqtt://HOST:PORT, not {url!r}")
    try:
        return u.hostname, u.port or 1883
    except ValueError:
        raise InputError(f"bad port in {url!r}") from None


def default_client_id() -> str:
    return f"citynode-bridge-{socket.gethostname()}"


def _topic_part(s: str) -> str:
    return "".join("_" if c in "/+#\0" else c for c in s) or "_"


# A device is named in topics and URLs only by a DevEUI (16 hex digits) or a network server's device id (The
# Things Stack: lower-case letters, digits and dashes, at most 36): nothing else can break a topic, a filter or
# a path. An uplink from any other name is an error record.
_DEVICE = re.compile(r"[0-9a-f]{16}|[a-z0-9](?:[-a-z0-9]{0,34}[a-z0-9])?")


def device_name_ok(device: str | None) -> TypeGuard[str]:
    return device is not None and _DEVICE.fullmatch(device) is not None


def parse(payload: bytes, kind: str) -> Uplink:
    """One incoming message -> Uplink; raises UplinkError if it is not one."""
    try:
        msg = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UplinkError(f"bad JSON: {e}") from None
    if not isinstance(msg, dict):
        raise UplinkError("expected a JSON object")
    return INPUTS[kind](msg)


def convert(payload: bytes, kind: str) -> tuple[str | None, dict | list]:
    """One incoming message -> (device, SenML pack); raises ValueError (UplinkError, PayloadError) if bad."""
    up = parse(payload, kind)
    samples, _warnings = decode_uplink(up, None, Stats())
    return up.device, senml_pack(samples, up.device)


@dataclass
class Delivery:
    """One decoded uplink for an output: `dup` when the broker says it may have been delivered before."""
    uplink: Uplink
    samples: list[dict]
    dup: bool = False
    received_at: float = field(default_factory=time.time)


class Output(Protocol):
    def deliver(self, items: list[Delivery]) -> int:
        """Make the items durable downstream; returns how many were new there (a repeat adds nothing).
        Raises OutputDown when it should be tried again later, CitynodeError when it never will work."""
        ...

    def problems(self) -> list[tuple[str | None, str]]:
        """(device, reason) of what was delivered but refused downstream, since the last call."""
        ...

    # optional: stop_by(deadline) -- a stopping bridge's monotonic deadline; a deliver() in progress should raise
    # OutputDown rather than begin work after it (what it left undone comes again: nothing of it is acknowledged)


@dataclass
class Counters:
    received: int = 0  # messages taken from the broker
    published: int = 0  # uplinks delivered to the output
    errors: int = 0  # messages that were not uplinks, or whose payload did not decode
    duplicates: int = 0  # redeliveries dropped
    missing: int = 0  # uplinks lost before the broker (FCnt gaps), reported
    late: int = 0  # uplinks that arrived after their gap was reported
    acked: int = 0
    connects: int = 0


class _Msg:
    __slots__ = ("sess", "gen", "mid", "qos", "dup", "topic", "payload", "done")

    def __init__(self, sess, gen, msg):
        self.sess, self.gen = sess, gen
        self.mid, self.qos, self.dup, self.topic, self.payload = msg.mid, msg.qos, msg.dup, msg.topic, msg.payload
        self.done = False


class _Session:
    """One persistent MQTT session of the bridge's shared subscription; paho's network thread fills the inbox."""

    def __init__(self, bridge: "Bridge", index: int, client_id: str):
        self.bridge, self.index, self.client_id = bridge, index, client_id
        self.gen = 0  # a new connection: message ids of the old one are void
        self.closed = threading.Event()  # set once a disconnect went through (after what was queued before it)
        self.barrier = threading.Event()  # set by an UNSUBACK: the broker has read everything sent before
        self.pending: deque[_Msg] = deque()  # in arrival order, acknowledged in that order once done
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5,
                        manual_ack=True)
        c.reconnect_delay_set(bridge.min_delay, bridge.max_delay)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = lambda *a: self.barrier.set()
        self.client = c

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.bridge.session_expiry  # unacked messages outlive a crash
        props.ReceiveMaximum = self.bridge.receive_maximum
        self.client.connect_async(self.bridge.host, self.bridge.port, keepalive=self.bridge.keepalive,
                                  clean_start=False, properties=props)
        self.client.loop_start()  # its thread reconnects with back-off after any failure, the first included

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        b = self.bridge
        if reason_code.is_failure:
            log.warning("broker %s:%s refused the connection: %s", b.host, b.port, reason_code)
            return
        b.counters.connects += 1
        (log.info if self.index == 0 else log.debug)(
            "connected to %s:%s as %s (session present: %s)", b.host, b.port, self.client_id, flags.session_present)
        client.subscribe(b.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        b = self.bridge
        if any(rc.is_failure for rc in reason_codes):
            log.error("broker refused the subscription to %s: %s", b.topic, reason_codes[0])
            return
        with b._lock:
            first = self.index not in b._subscribed
            b._subscribed.add(self.index)
            if first and len(b._subscribed) == len(b.sessions):
                log.info("subscribed to %s%s", b.topic, f" ({len(b.sessions)} sessions)" if len(b.sessions) > 1
                         else "")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        b = self.bridge
        self.closed.set()
        if getattr(reason_code, "value", None) == TAKEN_OVER:
            b.fail(f"another client connected as {self.client_id}: give each bridge its own --client-id")
        elif not b._stop.is_set():
            log.warning("%s disconnected from %s:%s (%s); reconnecting", self.client_id, b.host, b.port,
                        reason_code)
        with b._lock:
            b._subscribed.discard(self.index)
        with self.lock:  # what was not acknowledged comes again on the next connection (persistent session)
            self.gen += 1
            self.pending.clear()

    def _on_message(self, client, userdata, msg):
        b = self.bridge
        if b._stop.is_set():  # stopping: left unacknowledged, the broker redelivers it to the next session
            return
        try:
            with self.lock:
                m = _Msg(self, self.gen, msg)
                self.pending.append(m)
            b._inbox.put(m)
        except Exception as e:  # noqa: BLE001 - an exception here would end paho's thread: end the bridge
            b.fail(f"{self.client_id}: {e!r}")

    def ack_ready(self) -> int:
        n = 0
        with self.lock:
            while self.pending and self.pending[0].done:
                m = self.pending.popleft()
                if m.qos and m.gen == self.gen:
                    self.client.ack(m.mid, m.qos)
                n += 1
        return n


class MqttOutput:
    """SenML packs to PREFIX/<device> on the bridge's broker (QoS 1), durable once the broker acknowledged."""

    def __init__(self, prefix: str):
        self.prefix = prefix.rstrip("/")
        self.bridge: Bridge | None = None

    def deliver(self, items: list[Delivery]) -> int:
        assert self.bridge is not None
        msgs = []
        for d in items:
            pack = senml_pack(d.samples, d.uplink.device)
            if pack:
                msgs.append((f"{self.prefix}/{d.uplink.device}", json.dumps(pack)))
        refused = self.bridge.publish_wait(msgs)
        if refused:
            raise OutputDown(f"the broker refused {len(refused)} of {len(msgs)} SenML messages: {refused[0]}")
        return len(msgs)

    def problems(self) -> list[tuple[str | None, str]]:
        return []


class Bridge:
    """Subscribes to `subscribe` and delivers every decoded uplink to `output` (an MqttOutput by default).

    run() blocks, reconnecting with exponential back-off (min_delay doubling up to max_delay seconds) and
    retrying an output that is down; stop() ends it from another thread or a signal handler after the batch in
    hand is delivered (up to drain_s seconds). `state`: the file that remembers deliveries across restarts
    (None: in memory). FCnt gaps still open after gap_grace seconds are reported on the errors topic.
    """

    def __init__(self, host: str, port: int, kind: str, subscribe: str, publish: str | None = None, *,
                 output: Output | None = None, errors_topic: str | None = None, group: str | None = None,
                 client_id: str | None = None, sessions: int = SESSIONS, session_expiry: int = 86400,
                 min_delay: float = 1, max_delay: float = 60, keepalive: int = 30,
                 receive_maximum: int = RECEIVE_MAXIMUM, drain_s: float = 5, state: DeliveryState | None = None,
                 gap_grace: float = 300, batch: int = BATCH, on_status=None):
        if kind not in INPUTS:
            raise InputError(f"unknown input kind {kind!r} (one of {', '.join(INPUTS)})")
        if output is None:
            if publish is None:
                raise InputError("give an MQTT prefix to publish to, or an output")
            output = MqttOutput(publish)
        if isinstance(output, MqttOutput):
            output.bridge = self
        self.output = output
        self.errors_topic = errors_topic or (f"{output.prefix}/{ERRORS_TOPIC}" if isinstance(output, MqttOutput)
                                             else f"citynode/{ERRORS_TOPIC}")
        # a node's status frames (FPort 3, answers to downlink commands): published decoded on
        # <prefix>/<device>/status, and handed to on_status(device, status) (the registry's counter record)
        self.status_prefix = output.prefix if isinstance(output, MqttOutput) else "citynode"
        self.on_status = on_status
        self.host, self.port, self.kind = host, port, kind
        self.client_id = client_id or default_client_id()
        share = group or (self.client_id if sessions > 1 else None)
        self.topic = f"$share/{_topic_part(share)}/{subscribe}" if share else subscribe
        self.session_expiry, self.keepalive, self.receive_maximum = session_expiry, keepalive, receive_maximum
        self.min_delay, self.max_delay = min_delay, max_delay
        self.drain_s, self.gap_grace, self.batch = drain_s, gap_grace, batch
        self.state = state or DeliveryState(None)
        self.counters = Counters()
        self._stop = threading.Event()
        self._deadline = float("inf")  # monotonic: after a stop, the batch in hand is given up at this time
        self._failure: str | None = None
        self._inbox: queue.SimpleQueue[_Msg] = queue.SimpleQueue()
        names = [self.client_id] if sessions == 1 else [f"{self.client_id}-{i}" for i in range(sessions)]
        self.sessions = [_Session(self, i, n) for i, n in enumerate(names)]
        out = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.client_id}-out",
                          protocol=MQTTProtocolVersion.MQTTv5)
        out.reconnect_delay_set(min_delay, max_delay)  # type: ignore[arg-type]
        out.max_inflight_messages_set(1000)
        out.max_queued_messages_set(0)
        out.on_disconnect = self._on_out_disconnect
        out.on_publish = self._on_out_publish
        self._puback = threading.Condition()
        self._answered: dict[int, str] = {}  # message id -> "" (accepted) or the broker's reason for refusing
        self.out = out
        self._last_gap_check = 0.0
        self._lock = threading.Lock()
        self._subscribed: set[int] = set()

    # --- running ---------------------------------------------------------------------------------------

    def run(self) -> None:
        """Connect (retrying) and deliver until stop(); raises BridgeError if it cannot go on."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        self.out.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                               properties=props)
        self.out.loop_start()
        for s in self.sessions:
            s.start()
        try:
            while not self._stop.is_set():
                batch = self._take()
                if batch:
                    self._process(batch)
                self._report_gaps()
                self._check_threads()
        finally:
            # Closing a socket while the broker is still sending to it resets the connection, and the broker then
            # drops what it had not read yet: our last acknowledgements, whose messages would come again. So
            # first a round trip (an UNSUBSCRIBE of a topic we never had: the UNSUBACK comes after the broker
            # read every packet before it), then the DISCONNECT.
            live = [s for s in self.sessions if s.client.is_connected()]
            for s in live:
                s.barrier.clear()
                s.client.unsubscribe(BARRIER_TOPIC)
            end = time.monotonic() + 5  # for all of them together: a stop is bounded
            for s in live:
                s.barrier.wait(max(0.0, end - time.monotonic()))
            for s in self.sessions:
                s.closed.clear()
                s.client.disconnect()
            end = time.monotonic() + 5
            for s in self.sessions:
                if s in live:
                    s.closed.wait(max(0.0, end - time.monotonic()))
                s.client.loop_stop()
            self.out.disconnect()
            self.out.loop_stop()
        if self._failure:
            raise BridgeError(self._failure)

    def _check_threads(self) -> None:
        """A paho network thread that died (an exception in it) would leave a bridge that takes nothing more
        while looking alive: end it instead, with an error, so that its supervisor restarts it."""
        for c, name in [(s.client, s.client_id) for s in self.sessions] + [(self.out, f"{self.client_id}-out")]:
            t = getattr(c, "_thread", None)
            if t is not None and not t.is_alive() and not self._stop.is_set():
                self.fail(f"the MQTT network thread of {name} died")

    def stop(self) -> None:
        """Ask run() to finish the batch in hand (up to drain_s) and return; safe from a signal handler."""
        self._deadline = time.monotonic() + self.drain_s
        self._tell_output()
        self._stop.set()

    def _tell_output(self) -> None:
        stop_by = getattr(self.output, "stop_by", None)
        if stop_by is not None:
            stop_by(self._deadline)

    def fail(self, reason: str) -> None:
        log.error("%s", reason)
        self._failure = reason
        self._deadline = time.monotonic()
        self._tell_output()
        self._stop.set()

    def _take(self) -> list[_Msg]:
        try:
            batch = [self._inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        while len(batch) < self.batch:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[_Msg]) -> None:
        deliveries: list[Delivery] = []
        errors: list[str] = []
        statuses: list[tuple[str, str]] = []
        keys: list[tuple[str, int, bytes, str | None]] = []
        in_batch: set[tuple[str, int, bytes]] = set()
        c = self.counters
        for m in batch:
            c.received += 1
            try:
                up = parse(m.payload, self.kind)
            except UplinkError as e:
                errors.append(self._error_record(m, str(e)))
                continue
            if not device_name_ok(up.device):
                errors.append(self._error_record(m, "no device id usable in a topic or URL (a DevEUI, or at "
                                                    "most 36 of a-z, 0-9 and -)", (up.device or "")[:100] or None))
                continue
            if up.fcnt is not None:  # (a usable device id is checked above)
                digest = hashlib.sha256(bytes([up.fport or 0]) + up.payload).digest()[:16]
                key = (up.device, up.fcnt, digest)
                if key in in_batch or self.state.delivered(*key):
                    c.duplicates += 1
                    continue
                in_batch.add(key)
                keys.append((*key, up.session))
            if up.fport == STATUS_FPORT:  # an answer to a downlink command, not data
                try:
                    st = decode_status(up.payload)
                except Exception as e:  # noqa: BLE001 - cbor2 raises several kinds for bad bytes
                    errors.append(self._error_record(m, f"status frame (FPort {STATUS_FPORT}) is not a CBOR map: "
                                                        f"{e}", up.device))
                    continue
                if self.on_status is not None:
                    try:
                        self.on_status(up.device, st)
                    except CitynodeError as e:
                        errors.append(self._error_record(m, f"status not recorded: {e}", up.device))
                statuses.append((f"{self.status_prefix}/{up.device}/status", json.dumps(st)))
                continue
            try:
                samples, _ = decode_uplink(up, None, Stats())
            except PayloadError as e:
                errors.append(self._error_record(m, str(e), up.device))
                continue
            except Exception as e:  # noqa: BLE001 - one bad message must not stop the bridge
                errors.append(self._error_record(m, f"internal error: {e!r}", up.device))
                continue
            deliveries.append(Delivery(up, samples, dup=m.dup))
        deliveries.sort(key=lambda d: (d.uplink.device or "", d.uplink.fcnt or 0))  # per device in order
        try:
            if deliveries:
                self._until_delivered(deliveries)
                for device, reason in self.output.problems():
                    errors.append(self._error_record(None, reason, device))
            if errors:
                self._publish_errors(errors)
            if statuses:
                refused = self.publish_wait(statuses)
                if refused:
                    log.error("the broker refused %d status message(s): %s", len(refused), refused[0])
        except _GiveUp:
            return  # stopping: nothing of this batch is acknowledged; the broker sends it again next time
        c.published += len(deliveries)
        c.errors += len(errors)
        if keys:
            c.late += self.state.record(keys)
        for m in batch:
            m.done = True
        for s in self.sessions:
            c.acked += s.ack_ready()

    def _until_delivered(self, items: list[Delivery]) -> None:
        delay = self.min_delay
        while True:
            try:
                self.output.deliver(items)
                return
            except CitynodeError as e:  # retrying will not help: stop, nothing of the batch acknowledged
                self.fail(f"output: {e}")
                raise _GiveUp() from None
            except OutputDown as e:
                if time.monotonic() >= self._deadline:
                    raise _GiveUp() from None
                log.warning("output: %s; trying again in %.1f s", e, delay)
                for d in items:
                    d.dup = True  # it may have been applied before the failure showed
                end = min(time.monotonic() + delay, self._deadline)
                while time.monotonic() < end and not (self._failure and self._stop.is_set()):
                    time.sleep(0.05)
                delay = min(delay * 2, self.max_delay)

    def _error_record(self, m: _Msg | None, reason: str, device: str | None = None) -> str:
        rec: dict = {"error": reason, "time": time.time()}
        if m is None:
            log.error("output: %s", reason)
        else:
            log.error("message on %s: %s", m.topic, reason)
            rec.update(topic=m.topic, payload_b64=base64.b64encode(m.payload[:4096]).decode())
        if device:
            rec["device"] = device
        return json.dumps(rec)

    def _report_gaps(self) -> None:
        now = time.time()
        if now - self._last_gap_check < 1:
            return
        self._last_gap_check = now
        gaps = self.state.open_gaps(now - self.gap_grace)
        if not gaps:
            return
        recs = []
        for device, lo, hi in gaps:
            n = hi - lo + 1
            log.error("device %s: %d uplink(s) missing (FCnt %d..%d)", device, n, lo, hi)
            recs.append(json.dumps({"device": device, "error": "frame counter gap", "fcnt_first": lo,
                                    "fcnt_last": hi, "missing": n, "time": now}))
        try:
            self._publish_errors(recs)
        except _GiveUp:
            return
        self.state.close_gaps(gaps)
        self.counters.missing += sum(hi - lo + 1 for _, lo, hi in gaps)

    def _publish_errors(self, records: list[str]) -> None:
        refused = self.publish_wait([(self.errors_topic, r) for r in records])
        if refused:
            log.error("the broker refused %d error record(s) on %s: %s", len(refused), self.errors_topic,
                      refused[0])

    # --- the output connection -------------------------------------------------------------------------

    def publish_wait(self, msgs: list[tuple[str, str]]) -> list[str]:
        """Publish (topic, payload) with QoS 1 and return once the broker answered every one (paho re-sends
        across reconnects): the reasons of those it refused. Raises _GiveUp when a stop's deadline passes."""
        mids = []
        for t, p in msgs:
            info = self.out.publish(t, p, qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:  # cannot happen with an unlimited queue; never silently
                raise BridgeError(f"paho refused to queue a message for {t}")
            mids.append(info.mid)
        refused = []
        with self._puback:
            for mid in mids:
                while mid not in self._answered:
                    if time.monotonic() >= self._deadline:
                        raise _GiveUp()
                    self._puback.wait(0.05)
                rc = self._answered.pop(mid)
                if rc:
                    refused.append(rc)
        return refused

    def _on_out_publish(self, client, userdata, mid, reason_code, properties):
        with self._puback:
            self._answered[mid] = str(reason_code) if reason_code.is_failure else ""
            self._puback.notify_all()

    def _on_out_disconnect(self, client, userdata, flags, reason_code, properties):
        if getattr(reason_code, "value", None) == TAKEN_OVER:
            self.fail(f"another client connected as {self.client_id}-out: give each bridge its own --client-id")
        elif not self._stop.is_set():
            log.warning("output connection to %s:%s lost (%s); reconnecting", self.host, self.port, reason_code)


class _GiveUp(Exception):
    pass

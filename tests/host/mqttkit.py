"""A real Mosquitto on loopback, bridge processes and MQTT helpers, for the bridge tests and bench/bridge_bench.py."""
from __future__ import annotations

import base64
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, up: bool = True, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if up:
                return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not come {'up' if up else 'down'}")


class Mosquitto:
    """mosquitto -c CONF on 127.0.0.1:PORT with its stock settings (a session away keeps 1,000 messages, the
    rest are dropped), or tuned: queues without limit, as docs/platform.md recommends."""

    def __init__(self, workdir: Path | None = None, port: int | None = None, tuned: bool = False):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="mosq"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tuned = tuned
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             + ("max_queued_messages 0\n" if tuned else "")
                             + "log_dest stderr\n")  # (a file named here: the broker, dropping root, could not write it)
        self.proc: subprocess.Popen | None = None

    def dropped(self) -> int:
        """How often this broker logged that it dropped messages for a client."""
        log = self.dir / "mosquitto.log"
        return log.read_text(errors="replace").count("Outgoing messages are being dropped") if log.exists() else 0

    def start(self) -> "Mosquitto":
        with open(self.dir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        wait_port(self.port, up=False)


class Collector:
    """Subscribes to TOPIC (QoS 1) and keeps every message as (topic, payload bytes)."""

    def __init__(self, port: int, topic: str, client_id: str | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        # MQTT v5 with a large Receive Maximum: a stock broker keeps everything in flight for it, none queued
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"collector-{os.getpid()}-{id(self)}",
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.on_message = self._on_message
        c.max_queued_messages_set(0)
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 65535
        c.connect("127.0.0.1", port, properties=props)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(10):
            raise TimeoutError("collector did not subscribe")

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload))

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def wait_for(self, n: int, timeout: float = 60.0) -> list[tuple[str, bytes]]:
        end = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < end:
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(port: int, items: list[tuple[str, str | bytes]], qos: int = 1, window: int = 1000) -> None:
    """Publish every (topic, payload) with QoS 1 and return once the broker has acknowledged all of them.

    At most `window` publishes are outstanding: paho numbers messages modulo 65536, so queueing more than that
    at once would reuse message ids and silently replace queued messages."""
    done = threading.Event()
    slots = threading.Semaphore(window)
    left = [len(items)]
    lock = threading.Lock()

    def on_publish(client, userdata, mid, rc, props):
        slots.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"publisher-{os.getpid()}-{time.monotonic_ns()}")
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not items:
        done.set()
    for topic, payload in items:
        if not slots.acquire(timeout=60):
            raise TimeoutError("broker stopped acknowledging publishes")
        c.publish(topic, payload, qos=qos)
    if not done.wait(600):
        raise TimeoutError(f"{left[0]} publishes not acknowledged")
    c.disconnect()
    c.loop_stop()


def ttn_message(frame: bytes, dev_eui: str, fcnt: int = 1, fport: int = 2) -> str:
    return json.dumps({"end_device_ids": {"device_id": f"node-{dev_eui[-4:]}", "dev_eui": dev_eui.upper(),
                                          "application_ids": {"application_id": "city"}},
                       "received_at": "2019-01-01T00:05:00Z",
                       "uplink_message": {"f_port": fport, "f_cnt": fcnt,
                                          "frm_payload": base64.b64encode(frame).decode()}})


def chirpstack_event(frame: bytes, dev_eui: str, fcnt: int = 1) -> str:
    return json.dumps({"time": "2019-01-01T00:05:00Z", "deviceInfo": {"deviceName": "n", "devEui": dev_eui},
                       "fCnt": fcnt, "fPort": 2, "data": base64.b64encode(frame).decode()})


class BridgeProc:
    """`citynode bridge` in its own process; lines of its log are collected by a reader thread."""

    def __init__(self, port: int, kind: str, subscribe: str, publish: str, group: str | None = None,
                 client_id: str | None = None, extra: tuple[str, ...] = (), state: Path | None = None,
                 env: dict[str, str] | None = None):
        # a state file of its own unless given (a restarted bridge gets its predecessor's)
        self.state = state or Path(tempfile.mkdtemp(prefix="bridge-state")) / "state.sqlite"
        cmd = [sys.executable, "-m", "citynode.cli", "bridge", "--broker", f"mqtt://127.0.0.1:{port}",
               "--input", kind, "--subscribe", subscribe, "--publish", publish, "--min-delay", "0.1",
               "--max-delay", "0.5", "--state", str(self.state), *extra]
        if group:
            cmd += ["--group", group]
        if client_id:
            cmd += ["--client-id", client_id]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def wait_line(self, text: str, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            if text in line:
                return line
        raise TimeoutError(f"bridge never logged {text!r}; log: {self.log[-10:]}")

    def stop(self) -> str:
        """SIGTERM, wait, and return its final summary line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGQUIT if hasattr(signal, "SIGQUIT") else signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self._reader.join(5)
            raise AssertionError("the bridge did not stop within 20 s of a SIGTERM; its log ends:\n"
                                 + "\n".join(self.log[-40:])) from None
        self._reader.join(5)
        return next((x for x in reversed(self.log) if "received," in x), "")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

"""The WiFi/MQTT link (cnode.mqttlink, cnode.mqtt) running under the MicroPython unix port against a real
Mosquitto broker on loopback, checked from the other side with paho-mqtt: exact frame bytes on the right
topics, frames that decode, a downlink delivered to link.downlink, and a broker outage (with a server that drops
every CONNECT meanwhile) that the link rides out with its reconnect back-off."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from citynode.payload.frame import decode_frame
from citynode.payload.channels import BY_ID, EPOCH_2000
from citynode.sim.runtime import run_mp
from cnode.encoder import Encoder, pack

MOSQUITTO = "/usr/sbin/mosquitto"
SCRIPT = Path(__file__).with_name("mqttlink_node.py")
EUI = "0018B20000000101"
IDS = [0, 1, 2, 4]  # temperature, humidity, pressure, pm2_5
REFS = [BY_ID[i].ref for i in IDS]
LIMIT = 51  # EU868 DR0-2, so the samples need several frames
DOWNLINK = bytes.fromhex("0a012c")
UP = f"citynode/{EUI}/up/"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto process on a free loopback port, with persistence in `tmp` (so a subscriber's session and
    its queued QoS 1 messages survive a restart)."""

    def __init__(self, tmp: Path):
        self.port = _free_port()
        self.log = tmp / "mosquitto.log"
        self.conf = tmp / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence true",
                 f"persistence_location {tmp}/", f"log_dest file {self.log}", "log_type all"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to user mosquitto, who cannot write tmp
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()}")  # type: ignore
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not open its port")

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if p is not None and p.stderr is not None:
            p.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker(tmp_path, request):
    assert Path(MOSQUITTO).exists(), "needs the Mosquitto broker: apt-get install -y mosquitto"
    b = Broker(tmp_path)
    request.addfinalizer(b.stop)
    b.start()
    return b


class Subscriber:
    """paho-mqtt client with a persistent session subscribed to every node's uplinks; records (topic, bytes)."""

    def __init__(self, port: int):
        self.msgs: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cntest-sub", clean_session=False)
        c.on_connect = lambda cl, ud, flags, rc, props: cl.subscribe("citynode/+/up/+", qos=1)
        c.on_subscribe = lambda cl, ud, mid, rcs, props: self.subscribed.set()
        c.on_message = self._message
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.client = c
        assert self.subscribed.wait(5), "paho did not subscribe"

    def _message(self, cl, ud, msg) -> None:
        with self.cond:
            self.msgs.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait_for(self, pred, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.msgs), timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def dead_server(port: int, want: int, timeout: float = 15) -> list[tuple[float, str]]:
    """Stand in for a broker that dies at every CONNECT: on `port`, read each CONNECT, close the connection,
    until `want` came from a node (paho's reconnects are not counted); returns (time, client id) of those."""
    seen: list[tuple[float, str]] = []
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen(4)
        srv.settimeout(timeout)
        while len(seen) < want:
            conn, _ = srv.accept()
            at = time.monotonic()
            with conn:
                conn.settimeout(2)
                data = b""
                while len(data) < 2 or len(data) < 2 + data[1]:  # CONNECTs here are shorter than 128 B
                    chunk = conn.recv(256)
                    if not chunk:
                        break
                    data += chunk
            assert data[:1] == b"\x10" and data[2:9] == b"\x00\x04MQTT\x04", data
            cid = data[14:14 + int.from_bytes(data[12:14], "big")].decode()
            if cid.startswith("cnode-"):
                seen.append((at, cid))
    return seen


def _samples(n: int, t0: int) -> list[list]:
    rnd = random.Random(n)
    return [[t0 + 300 * i, [rnd.randint(-500, 3500), rnd.randint(200, 1000), rnd.randint(95000, 104000),
                            rnd.randint(0, 900)], None] for i in range(n)]


def _frames(samples) -> list[bytes]:
    out: list[bytes] = []
    pack(Encoder(IDS, REFS), [tuple(s) for s in samples], LIMIT, lambda buf, n: out.append(bytes(buf[:n])))
    return out


def _decoded(frames) -> list[tuple[int, list]]:
    rows = []
    for f in frames:
        samples, warnings = decode_frame(f)
        assert warnings == []
        for s in samples:
            rows.append((s.t - EPOCH_2000, [round(s.values[BY_ID[i].name] * 10 ** -BY_ID[i].exp) for i in IDS]))
    return rows


def test_link_under_micropython_against_mosquitto(broker):
    samples = _samples(30, 800_000_000)
    after = _samples(1, 800_100_000)
    want = _frames(samples)
    want_last = _frames(after)
    assert len(want) >= 3 and len(want_last) == 1
    job = {"eui": EUI, "ids": IDS, "refs": REFS, "limit": LIMIT, "samples": samples, "after": after}
    sub = Subscriber(broker.port)
    try:
        result: list[subprocess.CompletedProcess] = []
        node = threading.Thread(target=lambda: result.append(
            run_mp(SCRIPT, stdin=json.dumps(job), heap="1M", args=[str(broker.port)], timeout=60)))
        node.start()
        try:
            got = sub.wait_for(lambda m: sum(t == UP + "3" or t == UP + "2" for t, _ in m) >= len(want), 15)
            assert got, f"uplinks before the downlink: {sub.msgs}"
            sub.client.publish(f"citynode/{EUI}/down/3", DOWNLINK, qos=1).wait_for_publish(5)
            assert sub.wait_for(lambda m: any(t == UP + "3" for t, _ in m), 15), "no reply to the downlink"
            before = list(sub.msgs)
            broker.stop()  # the node is waiting to see its connection drop
            attempts = dead_server(broker.port, 3)
            broker.start()
        finally:
            node.join(60)
        assert result, "the MicroPython node did not finish"
        proc = result[0]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert sub.wait_for(lambda m: len(m) > len(before), 10), "nothing arrived after the broker restart"
        after_msgs = sub.msgs[len(before):]
    finally:
        sub.close()

    # the MicroPython encoder made the same frames as the CPython one; all sent, the even ones confirmed
    assert out["frames"] == [f.hex() for f in want]
    assert out["sent"] == [True] * len(want)
    # exact bytes on the data topic, in order, and they decode to the samples
    assert before[:len(want)] == [(UP + "2", f) for f in want]
    assert _decoded([p for _, p in before[:len(want)]]) == [(s[0], s[1]) for s in samples]
    # the downlink came back through link.downlink and was answered on port 3
    assert out["downlink"] == [3, DOWNLINK.hex()]
    assert out["reply"] is True
    assert before[len(want):] == [(UP + "3", b"\x01" + DOWNLINK)]
    # broker restart: the link saw the drop, reconnected, and the next frame went through (acknowledged)
    assert out["drop_seen"] is True
    assert out["after_restart"] is True
    assert out["connects"] == 2
    assert [cid for _, cid in attempts] == [f"cnode-{EUI}"] * 3
    # reconnect attempts spaced by the doubling back-off (200 ms, then 400 ms): lower bounds only
    assert attempts[1][0] - attempts[0][0] >= 0.19 and attempts[2][0] - attempts[1][0] >= 0.39
    assert out["link_down"] >= 2
    assert bytes.fromhex(out["last"]) == want_last[0]
    assert after_msgs == [(UP + "2", want_last[0])]
    assert _decoded([want_last[0]]) == [(after[0][0], after[0][1])]

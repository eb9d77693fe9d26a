# A node's MQTT uplink under the MicroPython unix port, against a real broker (driven by test_mqttlink.py).
#
# argv: broker port. stdin: JSON {"eui", "ids", "refs", "limit", "samples": [[t, vals, flags], ...], "after"}.
# Sends the encoded frames on port 2 (even ones confirmed), waits for a downlink, answers it on port 3, waits
# until the broker goes away (the test restarts it), sends one more frame and prints one JSON line of results.
import json
import socket
import sys
import time

import binascii

from cnode.encoder import Encoder, pack
from cnode.mqttlink import LinkDown, MqttLink
from citynode.sim.hwsim import network  # the port's network.WLAN, strict


def deadline_passed(t0, ms):
    return time.ticks_diff(time.ticks_ms(), t0) >= ms


def main():
    port = int(sys.argv[1])
    job = json.loads(sys.stdin.read())
    eui = binascii.unhexlify(job["eui"])
    network.access_point("cityap", "secret", polls=3)  # associated on the third poll after connect()
    link = MqttLink(network.WLAN(network.STA_IF), "cityap", "secret", socket, "127.0.0.1", eui, time, port=port,
                    keepalive=10, timeout_ms=2000, ack_timeout_ms=3000, backoff_ms=200, backoff_max_ms=1000)
    out = {"sent": [], "frames": []}
    link.join(5)
    enc = Encoder(job["ids"], job["refs"])
    frames = []
    pack(enc, [(s[0], s[1], s[2]) for s in job["samples"]], job["limit"],
         lambda buf, n: frames.append(bytes(buf[:n])))
    for i, f in enumerate(frames):
        out["sent"].append(link.send(2, f, i % 2 == 0))
        out["frames"].append(binascii.hexlify(f).decode())
    t0 = time.ticks_ms()
    dl = None
    while not deadline_passed(t0, 8000):
        if link.poll(200):
            dl = link.downlink
            break
    out["downlink"] = None if dl is None else [dl[0], binascii.hexlify(dl[1]).decode()]
    out["reply"] = link.send(3, b"\x01" + (dl[1] if dl else b""), True)
    t0 = time.ticks_ms()
    c0 = link.connects
    # the test restarts the broker now; poll() sees the end of stream and may reconnect at once
    while link.connected and link.connects == c0 and not deadline_passed(t0, 8000):
        link.poll(100)
    out["drop_seen"] = link.connects > c0 or not link.connected
    after = []
    pack(enc, [(s[0], s[1], s[2]) for s in job["after"]], job["limit"],
         lambda buf, n: after.append(bytes(buf[:n])))
    last = after[0]
    out["last"] = binascii.hexlify(last).decode()
    downs = 0
    t0 = time.ticks_ms()
    ok = None
    while not deadline_passed(t0, 10000):
        try:
            ok = link.send(2, last, True)
            break
        except LinkDown as e:
            downs += 1
            time.sleep_ms(e.wait_ms)
    out["after_restart"] = ok
    out["link_down"] = downs
    out["connects"] = link.connects
    link.close()
    print(json.dumps(out))


main()

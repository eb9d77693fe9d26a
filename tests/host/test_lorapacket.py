"""Frames produced by our LoRaWAN MAC and simulated network server, checked by an independent implementation:
npm lora-packet (pinned in tests/js/package.json; `npm ci --prefix tests/js`) verifies every MIC, decrypts
every FRMPayload and join-accept, and derives the session keys."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

from citynode.sim import netserver as NS
from citynode.sim.hwsim.clock import VirtualClock
from citynode.sim.hwsim.radio import Air, SimModem
from cnode.lorawan.mac import Mac
from cnode.lorawan.store import DictStore

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "js" / "check_frames.js"
APP_KEY = bytes.fromhex("8c2f6d1e0a4b95c7d3e2f1a0b9c8d7e6")
JOIN_EUI = bytes.fromhex("70B3D57ED0000010")
DEV_EUI = bytes.fromhex("0018B20000000101")


def lora_packet(frames: list[dict]) -> list[dict]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the lora-packet check"
    assert (ROOT / "tests" / "js" / "node_modules" / "lora-packet").is_dir(), "run: npm ci --prefix tests/js"
    out = subprocess.run([node, str(SCRIPT)], input=json.dumps(frames), capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def session():
    clock = VirtualClock()
    air = Air(clock)
    ns = NS.NetworkServer(air, rx1_dr_offset=1, rx2_dr=3, cflist=[867100, 867300, 867500, 867700, 867900])
    ns.add_gateway()
    dev = ns.add_device(DEV_EUI, APP_KEY, JOIN_EUI)
    mac = Mac(SimModem(air), clock, DictStore(), DEV_EUI, JOIN_EUI, APP_KEY, rand=lambda n: 0)
    return air, ns, dev, mac


def test_frames_agree_with_lora_packet():
    air, ns, dev, mac = session()
    mac.store.set_int("dn", 41)  # DevNonce counter as left by earlier joins
    mac.join()
    jr, ja = air.log[0], air.log[1]
    sent = []  # (Tx, payload bytes we asked for or None, fcnt32)
    mac.send(2, b"\x01\x02\x03 first")
    sent.append((air.log[-1], b"\x01\x02\x03 first", 0))
    mac.request_link_check()  # FOpts 02
    ns.queue_downlink(DEV_EUI, 9, bytes(range(60)))  # 4 keystream blocks
    mac.send(3, bytes(range(100, 140)))
    up_fopts = [t for t in air.log if t.source == "node"][-1]
    sent.append((up_fopts, bytes(range(100, 140)), 1))
    down = air.log[-1]
    assert mac.downlink == (9, bytes(range(60)))
    mac.send(4, b"confirmed", confirmed=True)
    sent.append(([t for t in air.log if t.source == "node"][-1], b"confirmed", 2))
    mac.fcnt_up = 70000  # past the 16-bit boundary: FCnt MSBs go into B0 and A_i
    mac.send(5, b"high counter")
    sent.append((air.log[-1] if air.log[-1].source == "node" else air.log[-2], b"high counter", 70000))
    assert dev.uplinks[-1].fcnt == 70000 and dev.uplinks[-1].data == b"high counter"

    # MAC commands longer than FOpts allows travel on FPort 0, encrypted with the NwkSKey
    cmds = NS.new_channel_req(8, 867100, 0, 5) + NS.new_channel_req(9, 867300, 0, 5) + NS.dev_status_req() * 6
    ns.queue_mac(DEV_EUI, cmds)
    mac.send(6, b"p0")
    port0 = air.log[-1]
    assert port0.iq_inverted and mac.ch_freq[8] == 867100 and mac.ch_freq[9] == 867300

    keys = {"nwk": mac.nwk_skey.hex(), "app": mac.app_skey.hex()}
    req = [{"kind": "joinreq", "phy": jr.data.hex(), "appkey": APP_KEY.hex()},
           {"kind": "joinaccept", "phy": ja.data.hex(), "appkey": APP_KEY.hex(), "devnonce": "0029"}]
    for tx, _, fcnt in sent:
        req.append(dict(keys, kind="data", phy=tx.data.hex(), fcnt_msb=struct.pack("<I", fcnt)[2:].hex()))
    req.append(dict(keys, kind="data", phy=port0.data.hex(), fcnt_msb="0000"))
    req.append(dict(keys, kind="data", phy=down.data.hex(), fcnt_msb="0000"))
    res = lora_packet(req)
    r = res.pop(-2)
    assert r["mic"] is True and r["fport"] == 0 and r["fopts"] == "" and r["payload"] == cmds.hex()

    r = res[0]
    assert r["mtype"] == "Join Request" and r["mic"] is True
    assert (r["appeui"], r["deveui"], r["devnonce"]) == (JOIN_EUI.hex(), DEV_EUI.hex(), "0029")
    r = res[1]
    assert r["mtype"] == "Join Accept" and r["mic"] is True
    assert r["devaddr"] == "%08x" % mac.devaddr and r["netid"] == "000013" and r["joinnonce"] == "000001"
    assert r["dlsettings"] == 0x13 and r["rxdelay"] == 1
    assert r["cflist"] == "".join(struct.pack("<I", f * 10)[:3].hex() for f in (867100, 867300, 867500,
                                                                              867700, 867900)) + "00"
    assert (r["nwkskey"], r["appskey"]) == (mac.nwk_skey.hex(), mac.app_skey.hex())
    for (tx, payload, fcnt), r in zip(sent, res[2:-1]):
        assert r["mic"] is True and r["dir"] == "up" and r["devaddr"] == "%08x" % mac.devaddr
        assert r["fcnt"] == fcnt & 0xFFFF and r["payload"] == payload.hex()
    assert res[3]["fopts"] == "02" and res[3]["fport"] == 3
    assert res[4]["mtype"] == "Confirmed Data Up" and res[4]["confirmed"] is True
    r = res[-1]
    assert r["mtype"] == "Unconfirmed Data Down" and r["mic"] is True and r["dir"] == "down"
    assert r["payload"] == bytes(range(60)).hex() and r["fport"] == 9 and r["fopts"].startswith("02")


def test_lora_packet_rejects_a_corrupted_frame():
    air, ns, dev, mac = session()
    mac.join()
    mac.send(2, b"abc")
    f = bytearray(air.log[-1].data)
    f[-5] ^= 1
    keys = {"nwk": mac.nwk_skey.hex(), "app": mac.app_skey.hex()}
    res = lora_packet([dict(keys, kind="data", phy=air.log[-1].data.hex()), dict(keys, kind="data", phy=f.hex())])
    assert res[0]["mic"] is True and res[1]["mic"] is False
